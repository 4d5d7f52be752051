"""Flow files: every validation error at its exact line:column, and the shipped flows."""

from __future__ import annotations

import json
import re
import textwrap
import wave
from pathlib import Path

import pytest

from callcontrol.errors import InvalidInput
from callcontrol.ivr import loader
from callcontrol.ivr.errors import FlowError, FlowValidationError
from callcontrol.ivr.loader import load_directory, load_flow
from callcontrol.ivr.model import Dial, GotoMenu, Menu, Play, Ring, Say, Sound, TimeSwitch
from callcontrol.ivr.sounds import sounds_in_dir

FLOWS = Path(__file__).resolve().parents[3] / "ivr_flows"
PBX_SOUNDS = Path("/var/cache/callcontrol/rootfs/usr/share/asterisk/sounds/en")
USERS = {"alice", "bob"}
SOUNDS = {"tt-monkeys", "hello", "goodbye", "vm-goodbye", "digits/1", "please-try-again"}

# A valid flow; tests break one thing in it at a time.
BASE = """\
start: main
menus:
  main:
    prompts: [hello]
    options:
      1: {ring: alice}
      2: sub
    on_failure: hangup
  sub:
    prompts: [goodbye]
    options:
      "*": main
    on_failure: main
"""


def write(tmp_path: Path, text: str, name: str = "f") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str, **kw: object) -> list[str]:
    """``line:col: message`` of every error of ``text``."""
    path = write(tmp_path, text)
    kw.setdefault("known_users", USERS)
    kw.setdefault("known_flows", {"f", "other"})
    kw.setdefault("sound_exists", SOUNDS.__contains__)
    with pytest.raises(FlowValidationError) as info:
        load_flow(path, **kw)  # type: ignore[arg-type]
    for error in info.value.errors:
        assert error.file == str(path)
    return [f"{e.line}:{e.column}: {e.message}" for e in info.value.errors]


def test_base_flow_is_valid(tmp_path: Path) -> None:
    flow = load_flow(write(tmp_path, BASE), known_users=USERS, sound_exists=SOUNDS.__contains__)
    assert flow.name == "f" and flow.start == "main"
    main = flow.nodes["main"]
    assert isinstance(main, Menu)
    assert main.options["1"] == Ring("alice")
    assert main.options["2"] == GotoMenu("sub")
    assert (main.timeout, main.retries, main.interruptible) == (5.0, 2, True)
    assert main.pos.line == 3 and main.pos.column == 3
    assert main.options["1"].pos.line == 6 and main.options["1"].pos.column == 17


def test_flow_validation_error_is_invalid_input_and_renders(tmp_path: Path) -> None:
    error = FlowValidationError([FlowError("b.yaml", 2, 1, "y"), FlowError("a.yaml", 9, 3, "x")])
    assert isinstance(error, InvalidInput)
    assert str(error) == "a.yaml:9:3: x\nb.yaml:2:1: y"


# ---- YAML level ----------------------------------------------------------------------


def test_yaml_syntax_error_has_its_position(tmp_path: Path) -> None:
    assert problems(tmp_path, "start: main\nmenus:\n  main: [a, b\n") == [
        "4:1: YAML syntax error: expected ',' or ']', but got '<stream end>'"
    ]


def test_unquoted_star_key_is_explained(tmp_path: Path) -> None:
    text = BASE.replace('"*": main', "*: main")
    (message,) = problems(tmp_path, text)
    assert message.startswith("12:8: YAML syntax error")
    assert 'write the keys * and # in quotes: "*": and "#":' in message


def test_unquoted_hash_key_is_explained(tmp_path: Path) -> None:
    text = BASE.replace('"*": main', '"*": main\n      #: hangup')
    assert problems(tmp_path, text) == [
        "13:7: '#' starts a comment in YAML: write the key in quotes, \"#\":"
    ]


def test_empty_file(tmp_path: Path) -> None:
    assert problems(tmp_path, "# nothing\n") == ["1:1: the flow file is empty"]


def test_duplicate_key(tmp_path: Path) -> None:
    text = BASE.replace("    on_failure: hangup\n", "    on_failure: hangup\n    on_failure: sub\n")
    assert problems(tmp_path, text) == [
        "9:5: duplicate key 'on_failure' in menu 'main' (first on line 8)"
    ]


def test_duplicate_option_key_quoted_and_not(tmp_path: Path) -> None:
    text = BASE.replace("      2: sub\n", '      2: sub\n      "1": hangup\n')
    assert problems(tmp_path, text) == [
        "8:7: duplicate key '1' in options of menu 'main' (first on line 6)"
    ]


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    text = BASE.replace("    on_failure: hangup\n", "    on_failure: hangup\n    retires: 3\n")
    assert problems(tmp_path, text) == [
        "9:5: unknown key 'retires' in menu 'main' (did you mean 'retries'?)"
    ]


def test_unknown_top_key_without_close_match_lists_allowed(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE + "colour: red\n") == [
        "14:1: unknown key 'colour' in the flow (allowed: description, menus, start, "
        "time_switches, timezone)"
    ]


def test_missing_required_keys(tmp_path: Path) -> None:
    text = BASE.replace("    on_failure: main\n", "")
    assert problems(tmp_path, text) == ["9:3: menu 'sub' is missing the required key 'on_failure'"]
    assert problems(tmp_path, "menus: {}\n") == [
        "1:1: the flow is missing the required key 'start'",
        "1:8: menus must name at least one menu",
    ]


def test_wrong_types(tmp_path: Path) -> None:
    text = BASE.replace("    on_failure: hangup\n", "    on_failure: hangup\n    timeout: soon\n")
    text = text.replace("    prompts: [goodbye]", "    prompts: [goodbye]\n    interruptible: 3")
    text = text.replace('options:\n      "*": main', "options: [main]")
    assert problems(tmp_path, text) == [
        "9:14: timeout must be a number of seconds, not text",
        "12:20: interruptible must be true or false, not a whole number",
        "13:14: options of menu 'sub' must be a mapping (key: value), not a list",
    ]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, "- a\n- b\n") == [
        "1:1: the flow must be a mapping (key: value), not a list"
    ]


def test_bad_option_key(tmp_path: Path) -> None:
    text = BASE.replace("      2: sub\n", "      2: sub\n      12: hangup\n      a: hangup\n")
    assert problems(tmp_path, text) == [
        '8:7: option key \'12\' must be one key: 0-9, "*" or "#"',
        '9:7: option key \'a\' must be one key: 0-9, "*" or "#"',
    ]


def test_action_with_two_kinds_and_bad_shapes(tmp_path: Path) -> None:
    text = BASE.replace(
        "      2: sub\n", "      2: sub\n      3: {menu: sub, ring: bob}\n      4: [sub]\n"
    )
    assert problems(tmp_path, text) == [
        "8:22: option 3 does one thing: menu and ring given",
        "9:10: option 4 must be an action (hangup, repeat, a menu name, or ring:, dial:, "
        "menu:, flow:, play:), not a list",
    ]


def test_repeat_and_dial_only_where_they_mean_something(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent("""\
        time_switches:
          hours:
            hours: {mon: "09:00-17:00"}
            open: repeat
            closed: {dial: null}
        """)
    text = text.replace("start: main", "start: hours")
    assert problems(tmp_path, text) == [
        "17:11: repeat in open: only a menu can be repeated",
        "18:14: dial in closed: direct dial is only a menu option",
    ]


def test_retries_and_other_ranges(tmp_path: Path) -> None:
    text = BASE.replace(
        "    on_failure: hangup\n",
        "    on_failure: hangup\n    retries: 11\n    timeout: 0.5\n",
    )
    text = text.replace("2: sub", "2: sub\n      9: {dial: {max_digits: 0, digit_timeout: 31}}")
    assert problems(tmp_path, text) == [
        "8:30: max_digits must be between 1 and 10, not 0",
        "8:48: digit_timeout must be between 1 and 30, not 31",
        "10:14: retries must be between 0 and 10, not 11",
        "11:14: timeout must be between 1 and 60, not 0.5",
    ]
    negative = BASE.replace("    on_failure: hangup\n", "    on_failure: hangup\n    retries: -1\n")
    assert problems(tmp_path, negative) == ["9:14: retries must be between 0 and 10, not -1"]


# ---- references, reachability, loops ---------------------------------------------------


def test_unknown_user(tmp_path: Path) -> None:
    text = BASE.replace("{ring: alice}", "{ring: alicee}")
    assert problems(tmp_path, text) == ["6:17: unknown user 'alicee' (did you mean 'alice'?)"]
    # None: users not checked
    load_flow(write(tmp_path, text), known_users=None)


def test_unknown_menu(tmp_path: Path) -> None:
    text = BASE.replace("      2: sub\n", "      2: sub\n      3: suport\n      4: {menu: nope}\n")
    assert problems(tmp_path, text) == [
        "8:10: unknown menu 'suport'",
        "9:17: unknown menu 'nope'",
    ]
    assert problems(tmp_path, BASE.replace("start: main", "start: mian")) == [
        "1:8: unknown menu 'mian' for start (did you mean 'main'?)"
    ]


def test_unknown_flow(tmp_path: Path) -> None:
    text = BASE.replace(
        "      2: sub\n", "      2: sub\n      3: {flow: othr}\n      4: {flow: f}\n"
    )
    assert problems(tmp_path, text) == ["8:17: unknown flow 'othr' (did you mean 'other'?)"]
    load_flow(write(tmp_path, text), known_flows=None)


def test_unreachable_menu(tmp_path: Path) -> None:
    text = BASE + "  lonely:\n    prompts: hello\n    options: {1: main}\n    on_failure: hangup\n"
    assert problems(tmp_path, text) == [
        "14:3: menu 'lonely' is unreachable: no path from start 'main'"
    ]


def test_loop_without_bound_between_menus(tmp_path: Path) -> None:
    text = BASE.replace("    on_failure: hangup\n", "    on_failure: sub\n")
    assert problems(tmp_path, text) == [
        "8:17: loop with no bound: main -> sub -> main goes round without any key press "
        "(on_failure, time switch or fallback); a silent caller would never leave it - "
        "end it with hangup or a play"
    ]


def test_loop_without_bound_through_fallback_repeat_and_self_flow(tmp_path: Path) -> None:
    ring = BASE.replace("    on_failure: hangup\n", "    on_failure: {ring: bob, fallback: main}\n")
    assert [p[:40] for p in problems(tmp_path, ring)] == [
        "8:39: loop with no bound: main -> main g"
    ]
    repeat = BASE.replace(
        "    on_failure: hangup\n", "    on_failure: {play: [hello], then: repeat}\n"
    )
    assert [p[:40] for p in problems(tmp_path, repeat)] == [
        "8:39: loop with no bound: main -> main g"
    ]
    self_flow = BASE.replace("    on_failure: hangup\n", "    on_failure: {flow: f}\n")
    assert [p[:40] for p in problems(tmp_path, self_flow)] == [
        "8:24: loop with no bound: main -> main g"
    ]


def test_loop_through_time_switch(tmp_path: Path) -> None:
    text = BASE.replace("start: main", "start: hours") + textwrap.dedent("""\
        time_switches:
          hours:
            hours: {mon-fri: "09:00-17:00"}
            open: main
            closed: hours
        """)
    (message,) = problems(tmp_path, text)
    assert message.startswith("18:13: loop with no bound: hours -> hours")


def test_loops_needing_a_key_are_fine(tmp_path: Path) -> None:
    # main -2-> sub -*-> main, and sub's on_failure -> main: bounded by main's hangup
    flow = load_flow(write(tmp_path, BASE))
    assert set(flow.nodes) == {"main", "sub"}


# ---- prompts -------------------------------------------------------------------------


def test_missing_sound(tmp_path: Path) -> None:
    text = BASE.replace("prompts: [hello]", "prompts: [hello, tt-monkeyz, {sound: digits/2}]")
    assert problems(tmp_path, text) == [
        "4:22: sound 'tt-monkeyz' does not exist on the PBX",
        "4:42: sound 'digits/2' does not exist on the PBX",
    ]
    assert load_flow(write(tmp_path, text), sound_exists=None).nodes["main"]


def test_bad_sound_name_and_prompt_shapes(tmp_path: Path) -> None:
    text = BASE.replace(
        "prompts: [hello]", "prompts: [../etc/passwd, 5, {say: hi, file: x.wav}, {}, {tune: x}]"
    )
    assert problems(tmp_path, text) == [
        "4:15: '../etc/passwd' is not a sound name (e.g. tt-monkeys or digits/1)",
        "4:30: a prompt in prompts must be a sound name or one of sound:, file:, say:, "
        "not a whole number",
        "4:43: a prompt is one of sound, file, say: say and file given",
        "4:57: a prompt needs one of sound:, file:, say:",
        "4:62: unknown key 'tune' in a prompt (allowed: file, say, sound)",
    ]


def test_say_prompt_and_voice(tmp_path: Path) -> None:
    text = BASE.replace(
        "prompts: [hello]", "prompts: [{say: Welcome  to\n  Example, voice: en-gb}]"
    )
    text = BASE.replace("prompts: [hello]", 'prompts: [{say: "Welcome  to Example", voice: en-gb}]')
    flow = load_flow(write(tmp_path, text))
    main = flow.nodes["main"]
    assert isinstance(main, Menu)
    assert main.prompts == (Say("Welcome to Example", "en-gb"),)
    bad = BASE.replace("prompts: [hello]", 'prompts: [{say: "", voice: "a b"}]')
    assert problems(tmp_path, bad) == [
        "4:21: say must not be empty",
        "4:32: voice 'a b' is not a voice name (e.g. en-gb)",
    ]


def _wav(path: Path, rate: int, channels: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * channels * 80)


def test_file_prompts(tmp_path: Path) -> None:
    _wav(tmp_path / "rec" / "ok.wav", 8000, 1)
    _wav(tmp_path / "rec" / "hifi.wav", 44100, 2)
    (tmp_path / "rec" / "ok.gsm").write_bytes(b"\xd8" * 33)
    (tmp_path / "outside.wav").write_bytes(b"")
    text = BASE.replace(
        "prompts: [hello]",
        "prompts:\n"
        "      - file: rec/ok.wav\n"
        "      - file: rec/ok.gsm\n"
        "      - file: rec/missing.wav\n"
        "      - file: rec/hifi.wav\n"
        "      - file: rec/song.mp3\n"
        "      - file: ../outside.wav\n",
    )
    assert problems(tmp_path, text) == [
        f"7:15: recording 'rec/missing.wav' does not exist (in {tmp_path.resolve()})",
        "8:15: recording 'rec/hifi.wav': is 44100 Hz, 2 channel(s), 16-bit; Asterisk needs "
        "8000 Hz mono 16-bit WAV",
        "9:15: recording 'rec/song.mp3': unsupported file type .mp3; use .wav, .gsm, .ulaw",
        "10:15: recording '../outside.wav' must be a path inside the flows directory",
    ]


# ---- time switches -------------------------------------------------------------------

SWITCH = BASE.replace("start: main", "start: hours") + textwrap.dedent("""\
    time_switches:
      hours:
        hours:
          mon-fri: ["09:00-12:30", "13:30-17:00"]
          sat: "22:00-02:00"
        holidays: [2026-12-25]
        open: main
        closed: {play: [goodbye]}
    """)


def test_time_switch_model(tmp_path: Path) -> None:
    flow = load_flow(write(tmp_path, SWITCH), default_timezone="Europe/Paris")
    assert flow.timezone == "Europe/Paris"
    switch = flow.nodes["hours"]
    assert isinstance(switch, TimeSwitch)
    assert len(switch.ranges) == 11
    assert isinstance(switch.closed, Play) and switch.closed.then is None
    assert switch.pos.line == 15


def test_a_holiday_listed_twice_is_an_error_at_the_second(tmp_path: Path) -> None:
    text = SWITCH.replace(
        "holidays: [2026-12-25]", "holidays: [2026-12-25, 2026-01-01, 2026-12-25]"
    )
    assert problems(tmp_path, text) == ["19:40: holiday 2026-12-25 is listed twice"]


def test_invalid_time_zone(tmp_path: Path) -> None:
    text = "timezone: Europe/Londn\n" + SWITCH
    assert problems(tmp_path, text) == [
        "1:11: unknown time zone 'Europe/Londn' (did you mean 'Europe/London'?) "
        "(use an IANA name such as Europe/London)"
    ]


def test_bad_days_time_ranges_and_holidays(tmp_path: Path) -> None:
    text = SWITCH.replace(
        '      sat: "22:00-02:00"\n',
        '      sat: "22:00-02:00"\n'
        '      sun: ["25:00-26:00", "9-5", "10:00-10:00", "08:00-24:30", 7]\n'
        '      mon-frid: "09:00-10:00"\n',
    ).replace("holidays: [2026-12-25]", "holidays: [2026-12-25, 2026-02-30, tomorrow]")
    assert problems(tmp_path, text) == [
        "19:13: bad time range '25:00-26:00': hours 00-23 (24:00 for midnight), minutes 00-59",
        "19:28: bad time range '9-5': write HH:MM-HH:MM, e.g. \"09:00-17:30\"",
        "19:35: bad time range '10:00-10:00': it starts and ends at the same time",
        "19:50: bad time range '08:00-24:30': hours 00-23 (24:00 for midnight), minutes 00-59",
        "19:65: bad time range '7': write HH:MM-HH:MM, e.g. \"09:00-17:30\"",
        "20:7: unknown day 'frid' (did you mean 'fri'?) in hours: use mon, tue, wed, thu, fri, "
        "sat, sun or a range such as mon-fri",
        "21:28: holiday '2026-02-30' must be a date YYYY-MM-DD",
        "21:40: holiday 'tomorrow' must be a date YYYY-MM-DD",
    ]


def test_names_reserved_duplicated_and_malformed(tmp_path: Path) -> None:
    text = BASE + "  hangup:\n    prompts: hello\n    options: {1: main}\n    on_failure: main\n"
    text += "  9lives:\n    prompts: hello\n    options: {1: main}\n    on_failure: main\n"
    text += "time_switches:\n  main:\n    hours: {}\n    open: main\n    closed: main\n"
    assert problems(tmp_path, text) == [
        "14:3: 'hangup' is a reserved word; name the menu otherwise",
        "18:3: menu name '9lives' must start with a letter and contain only letters, "
        "digits, _ and -",
        "23:3: the name 'main' is already used on line 3",
    ]


def test_every_error_at_once_sorted(tmp_path: Path) -> None:
    text = BASE.replace("{ring: alice}", "{ring: carol}").replace(
        "start: main", "start: main\nx: 1"
    )
    text = text.replace("prompts: [goodbye]", "prompts: [nope]")
    found = problems(tmp_path, text)
    assert found == [
        "2:1: unknown key 'x' in the flow (allowed: description, menus, start, "
        "time_switches, timezone)",
        "7:17: unknown user 'carol'",
        "11:15: sound 'nope' does not exist on the PBX",
    ]


def test_bad_flow_file_name_and_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path, BASE, name="-bad")
    with pytest.raises(FlowValidationError) as info:
        load_flow(path)
    assert [e.message[:22] for e in info.value.errors] == ["flow name '-bad' (the "]
    with pytest.raises(FlowValidationError) as info:
        load_flow(tmp_path / "missing.yaml")
    assert info.value.errors[0].message.startswith("cannot read the flow file")
    (tmp_path / "latin.yaml").write_bytes(b"start: m\xe9nu\n")
    with pytest.raises(FlowValidationError, match="not UTF-8"):
        load_flow(tmp_path / "latin.yaml")


def test_load_directory_collects_good_flows_and_all_errors(tmp_path: Path) -> None:
    write(tmp_path, BASE.replace("      2: sub\n", "      2: sub\n      3: {flow: two}\n"), "one")
    write(tmp_path, BASE.replace("{ring: alice}", "{flow: three}"), "two")
    (tmp_path / "notes.txt").write_text("not a flow")
    flows, errors = load_directory(tmp_path, known_users=USERS)
    assert set(flows) == {"one"}
    assert [str(e) for e in errors] == [f"{tmp_path / 'two.yaml'}:6:17: unknown flow 'three'"]


# ---- the shipped flows -----------------------------------------------------------------


def test_shipped_flows_validate_clean() -> None:
    sound_exists = None
    if PBX_SOUNDS.parent.is_dir():
        catalog = sounds_in_dir(PBX_SOUNDS)
        assert "tt-monkeys" in catalog
        sound_exists = catalog.__contains__
    flows, errors = load_directory(FLOWS, known_users=USERS, sound_exists=sound_exists)
    assert errors == []
    assert "main" in flows
    main = flows["main"]
    assert main.timezone == "Europe/London"
    assert isinstance(main.nodes[main.start], TimeSwitch)
    menu = main.nodes["main"]
    assert isinstance(menu, Menu)
    assert isinstance(menu.options["9"], Dial)
    assert menu.options["1"] == Ring("bob", GotoMenu("nobody_available"))
    for path in FLOWS.glob("*.yaml"):
        assert path.read_text().startswith("# yaml-language-server: $schema=flow.schema.json\n")


def test_readme_example_validates(tmp_path: Path) -> None:
    readme = (FLOWS / "README.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", readme, re.S)
    assert example is not None
    (tmp_path / "recordings").mkdir()
    _wav(tmp_path / "recordings" / "welcome.wav", 8000, 1)
    path = write(tmp_path, example.group(1), "example")
    stock = {"vm-goodbye", "vm-nobodyavail", "im-sorry", "please-try-again", "pm-invalid-option"}
    flow = load_flow(path, known_users=USERS, sound_exists=stock.__contains__)
    assert set(flow.nodes) == {"office_hours", "main", "support"}


def test_schema_matches_the_loader() -> None:
    schema = json.loads((FLOWS / "flow.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(loader.TOP_KEYS)
    defs = schema["$defs"]
    assert set(defs["menu"]["properties"]) == set(loader.MENU_KEYS)
    assert set(defs["time_switch"]["properties"]) == set(loader.SWITCH_KEYS)
    kinds = {next(iter(a["required"])) for a in defs["action"]["anyOf"] if "required" in a}
    assert kinds == set(loader.ACTION_KINDS)
    prompt_kinds = {p["required"][0] for p in defs["prompt"]["anyOf"] if "required" in p}
    assert prompt_kinds == set(loader.PROMPT_KINDS)


def test_schema_accepts_the_shipped_flow() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json.loads((FLOWS / "flow.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    doc = yaml.safe_load((FLOWS / "main.yaml").read_text())
    doc = json.loads(json.dumps(doc, default=str))  # dates as text, as editors see them
    assert list(validator.iter_errors(doc)) == []
    assert list(validator.iter_errors({"start": "x", "menus": {}, "extra": 1}))


def test_models_keep_prompts_in_order(tmp_path: Path) -> None:
    flow = load_flow(write(tmp_path, BASE.replace("[hello]", "[hello, {sound: digits/1}]")))
    main = flow.nodes["main"]
    assert isinstance(main, Menu)
    assert main.prompts == (Sound("hello"), Sound("digits/1"))


# ---- loops across flows ----------------------------------------------------------------


def test_loop_without_key_across_flows_is_an_error_in_each_file(tmp_path: Path) -> None:
    # a -> b -> a on failure: with timeout 60 and retries 10, ~9 hours of a billed call
    silent = "    timeout: 60\n    retries: 10\n    on_failure: {flow: NEXT}\n"
    for name, following in (("a", "b"), ("b", "a")):
        text = BASE.replace("    on_failure: hangup\n", silent.replace("NEXT", following))
        write(tmp_path, text, name)
    write(tmp_path, BASE.replace("{ring: alice}", "{flow: a}"), "c")  # a key: fine
    flows, errors = load_directory(tmp_path, known_users=USERS)
    assert set(flows) == {"c"}
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    tail = "; a silent caller would never leave it - end one of them with hangup or a play"
    assert [str(e) for e in errors] == [
        f"{a}:10:24: loop with no bound across flows: a -> b -> a goes round without any key "
        f"press (flow: b here, flow: a at {b}:10:24){tail}",
        f"{b}:10:24: loop with no bound across flows: b -> a -> b goes round without any key "
        f"press (flow: a here, flow: b at {a}:10:24){tail}",
    ]


def test_loop_across_flows_through_time_switches_and_fallbacks(tmp_path: Path) -> None:
    write(tmp_path, BASE.replace("on_failure: hangup", "on_failure: {flow: y}"), "x")
    switch = """\
        start: hours
        time_switches:
          hours:
            hours: {mon-fri: "09:00-17:00"}
            open: {ring: bob, fallback: {play: [hello], then: {flow: z}}}
            closed: m
        menus:
          m:
            prompts: [hello]
            options: {1: hours}
            on_failure: hangup
        """
    write(tmp_path, switch, "y")
    write(tmp_path, BASE.replace("on_failure: hangup", "on_failure: {flow: x}"), "z")
    flows, errors = load_directory(tmp_path, known_users=USERS)
    assert flows == {}
    assert [(Path(e.file).stem, e.message[:64]) for e in errors] == [
        ("x", "loop with no bound across flows: x -> y -> z -> x goes round wit"),
        ("y", "loop with no bound across flows: y -> z -> x -> y goes round wit"),
        ("z", "loop with no bound across flows: z -> x -> y -> z goes round wit"),
    ]
