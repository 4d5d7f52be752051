"""The simulator's output for a few paths, its key script, and the `ivr` commands."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from callcontrol.cli import ivr as commands
from callcontrol.config import Settings
from callcontrol.errors import InvalidInput, NotFound
from callcontrol.ivr.errors import FlowValidationError
from callcontrol.ivr.loader import load_flow
from callcontrol.ivr.port import RingOutcome
from callcontrol.ivr.simulate import parse_at, parse_keys, parse_ring, simulate

FLOWS = Path(__file__).resolve().parents[3] / "ivr_flows"
MAIN = load_flow(FLOWS / "main.yaml")
EXT = {"1001": "alice", "1002": "bob"}
OPEN = "2026-11-27T10:00"  # a Friday, in the flow's zone (Europe/London)
WELCOME = (
    "play file:recordings/welcome.wav, say:'For sales, press 1. For support, press 2. "
    "To speak to the operator, press 0. If you know the extension of the person you are "
    "calling, press 9.'"
)
SUPPORT = (
    "play say:'For technical support, press 1. For billing, press 2. To go back to the "
    "main menu, press star.'"
)


def test_support_then_technical() -> None:
    assert simulate(MAIN, ["2", "1"], at=OPEN) == [
        "time switch office_hours",
        "Fri 2026-11-27 10:00 Europe/London: open",
        "menu main",
        WELCOME,
        "wait 5s for a key -> 2",
        "key 2: menu support",
        "menu support",
        SUPPORT,
        "wait 5s for a key -> 1",
        "key 1: ring alice",
        "ring alice -> answered",
        "end: connected to alice",
    ]


def test_closed_hours_message_then_hangup() -> None:
    lines = simulate(MAIN, [], at="2026-12-25T10:00")  # a Friday, but a holiday
    assert lines[1] == "Fri 2026-12-25 10:00 Europe/London: closed"
    assert lines[2].startswith("play file:recordings/welcome.wav, say:'Our offices are closed.")
    assert lines[2].endswith("sound:vm-goodbye")
    assert lines[3:] == ["hangup", "end: hung up by the flow"]


def test_sales_busy_then_nobody_available_times_out() -> None:
    lines = simulate(MAIN, ["1", "_"], at=OPEN, ring={"bob": RingOutcome.BUSY})
    assert lines[5:] == [
        "key 1: ring bob",
        "ring bob -> busy",
        "menu nobody_available",
        "play sound:vm-nobodyavail, say:'To try someone else, press 1. To end the call, "
        "press the hash key.'",
        "wait 5s for a key -> timeout",
        "timeout, attempt 1 of 2",
        "play sound:vm-nobodyavail, say:'To try someone else, press 1. To end the call, "
        "press the hash key.'",
        "wait 5s for a key -> timeout",
        "timeout, attempt 2 of 2: on_failure",
        "play sound:vm-goodbye",
        "hangup",
        "end: hung up by the flow",
    ]


def test_direct_dial_with_barge_in_and_caller_hangup() -> None:
    lines = simulate(MAIN, ["9", "^1", "002"], at=OPEN, extensions=EXT)
    assert lines[5:] == [
        "key 9: dial an extension (up to 4 digits)",
        "play say:'Please enter the extension, then press the hash key.' -> 1 (barge-in)",
        "digits (#, 4 digits or 3s end) -> 1002",
        "dial 1002 -> answered",
        "end: connected to extension 1002",
    ]
    lines = simulate(MAIN, ["hangup"], at=OPEN)
    assert lines[-2:] == [WELCOME, "end: caller hung up"]


def test_key_script_parsing() -> None:
    assert parse_keys("1, #,_,^2,1002#,hangup") == [
        "1",
        "#",
        "_",
        "^2",
        "1",
        "0",
        "0",
        "2",
        "#",
        "hangup",
    ]
    assert parse_keys("") == []
    assert parse_keys(["^12"]) == ["^1", "2"]
    for bad in ("a", "^", "1x", "12^3"):
        with pytest.raises(InvalidInput, match="bad key"):
            parse_keys(bad)
    assert parse_ring(["alice=busy", " 1002 = NO_ANSWER "]) == {
        "alice": RingOutcome.BUSY,
        "1002": RingOutcome.NO_ANSWER,
    }
    for bad in ("alice", "alice=maybe", "=busy"):
        with pytest.raises(InvalidInput, match="--ring expects"):
            parse_ring([bad])
    assert parse_at("2026-11-27T10:00", "Europe/London").utcoffset() == timedelta(0)
    assert parse_at("2026-07-01T10:00", "Europe/London").utcoffset() == timedelta(hours=1)
    with pytest.raises(InvalidInput, match="--at"):
        parse_at("friday", "UTC")


# ---- the commands ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callcontrol")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(group: Any, name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, help=help)
        p.set_defaults(fn=fn)
        return p

    commands.register(sub, add)
    return parser


def _run(settings: Settings, *argv: str) -> int:
    args = _parser().parse_args(list(argv))
    return int(args.fn(settings, args))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # no database in data_dir: users are not checked (and no database file is created)
    return Settings(data_dir=tmp_path / "var", flows_dir=FLOWS, pbx_root=tmp_path / "nopbx")


def test_validate_shipped_flows(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(settings, "ivr", "validate") == 0
    out, err = capsys.readouterr()
    assert out.strip() == "1 flows OK"
    assert "users not checked" in err
    assert not (tmp_path / "var").exists()


def test_validate_reports_every_error_and_fails(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("start: main\nmenus:\n  main:\n    prompt: hello\n")
    assert _run(settings, "ivr", "validate", str(bad), str(FLOWS / "main.yaml")) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{bad}:3:3: menu 'main' is missing the required key 'on_failure'",
        f"{bad}:3:3: menu 'main' is missing the required key 'options'",
        f"{bad}:3:3: menu 'main' is missing the required key 'prompts'",
        f"{bad}:4:5: unknown key 'prompt' in menu 'main' (did you mean 'prompts'?)",
    ]
    assert "4 errors in 1 of 2 flows" in err


def test_validate_empty_directory(settings: Settings, tmp_path: Path) -> None:
    empty = settings.model_copy(update={"flows_dir": tmp_path})
    with pytest.raises(NotFound, match="no flow files"):
        _run(empty, "ivr", "validate")


def test_simulate_command(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code = _run(
        settings, "ivr", "simulate", "main", "--keys", "0", "--at", OPEN, "--ring", "alice=busy"
    )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert "ring alice -> busy" in out and out[-1] == "end: hung up by the flow"


def test_simulate_refuses_an_invalid_flow(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("start: nowhere\nmenus: {}\n")
    with pytest.raises(FlowValidationError, match=r"broken\.yaml:2:8: menus must name"):
        _run(settings, "ivr", "simulate", str(tmp_path / "broken.yaml"))
    with pytest.raises(NotFound, match="no flow 'nope'"):
        _run(settings, "ivr", "simulate", "nope")


def test_graph_command(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    if shutil.which("dot") is None:
        pytest.skip("graphviz (dot) is not installed")
    out = tmp_path / "main.svg"
    assert _run(settings, "ivr", "graph", "main", "-o", str(out)) == 0
    assert out.read_text().lstrip().startswith("<?xml")
    with pytest.raises(InvalidInput, match=r"\.svg or \.png"):
        _run(settings, "ivr", "graph", "main", "-o", str(tmp_path / "main.pdf"))
