"""The dialplan that spreads calls over the workers' Stasis applications."""

from __future__ import annotations

import re
from pathlib import Path

from callcontrol.config import Settings
from callcontrol.pbx.dialplan import WORKERS_FILES, workers_conf

EXTENSIONS = Path(__file__).resolve().parents[2] / "dialplan" / "extensions.conf"


def _steps(conf: str, pattern: str) -> list[str]:
    """The applications of one extension, in order."""
    lines = conf.splitlines()
    start = lines.index(next(x for x in lines if x.startswith(f"exten => {pattern},1,")))
    out = [lines[start].split(",", 2)[2]]
    for line in lines[start + 1 :]:
        if not line.startswith(" same => n"):
            break
        out.append(line.removeprefix(" same => n").lstrip(","))
    return out


def test_one_worker_writes_no_extension_so_the_single_app_serves_as_before() -> None:
    for side in ("carrier", "users"):
        conf = workers_conf(Settings(), side)
        assert "exten" not in conf and all(line.startswith(";") for line in conf.splitlines())
    # the single app's extensions, as they always were, in contexts the entry contexts
    # include after the workers' ones (an include keeps the caller's context and CDR)
    text = EXTENSIONS.read_text()
    assert "include => callcontrol-workers-carrier\ninclude => callcontrol-app-carrier" in text
    assert "include => callcontrol-workers-users\ninclude => callcontrol-app-users" in text
    for name in WORKERS_FILES:
        assert f"#tryinclude {name}" in text
    # a carrier's caller hears ringing before the app looks the number up, and the app
    # is told so (it sends no 180 of its own)
    assert (
        text.count(" same => n,Ringing()\n same => n,Stasis(callcontrol,inbound,${EXTEN},ringing)")
        == 2
    )
    assert text.count("Stasis(callcontrol,outbound,${EXTEN})") == 2


def test_two_workers_round_robin_and_pass_a_call_on_when_a_worker_is_down() -> None:
    conf = workers_conf(Settings(workers=2), "carrier")
    for pattern in ("_X.", "_+X."):
        assert _steps(conf, pattern) == [
            "NoOp(inbound call to ${EXTEN} from ${CALLERID(num)})",
            "Ringing()",
            "Set(CALLCONTROL_WORKER=$[0${GLOBAL(CALLCONTROL_NEXT_WORKER)} % 2 + 1])",
            "Set(GLOBAL(CALLCONTROL_NEXT_WORKER)=${CALLCONTROL_WORKER})",
            "Stasis(callcontrol-${CALLCONTROL_WORKER},inbound,${EXTEN},ringing)",
            'GotoIf($["${STASISSTATUS}" != "FAILED"]?stasis-returned,s,1)',
            "Stasis(callcontrol-$[${CALLCONTROL_WORKER} % 2 + 1],inbound,${EXTEN},ringing)",
            'GotoIf($["${STASISSTATUS}" != "FAILED"]?stasis-returned,s,1)',
            "Stasis(callcontrol,inbound,${EXTEN},ringing)",
            "Goto(stasis-returned,s,1)",
        ]


_MOD = re.compile(r"\$\[\(?(?P<w>\d+)(?: \+ (?P<add>\d+)\))? % (?P<n>\d+) \+ 1\]")


def _tries(conf: str, app: str, first: int) -> list[int]:
    """The workers a call tries when the counter picked ``first``: the dialplan's
    expressions evaluated as Asterisk does (integers: ``$[(w + a) % n + 1]``)."""
    out = []
    extension = conf.split("exten => _+X.", maxsplit=1)[0]
    for found in re.findall(rf"Stasis\({app}-([^,]+),", extension):
        arg = found.replace("${CALLCONTROL_WORKER}", str(first))
        match = _MOD.fullmatch(arg)
        if match is None:
            out.append(int(arg))
            continue
        worker, add, count = int(match["w"]), int(match["add"] or 0), int(match["n"])
        out.append((worker + add) % count + 1)
    return out


def test_n_workers_each_call_tries_every_worker_once_starting_with_its_pick() -> None:
    for count in (2, 3, 5):
        conf = workers_conf(Settings(workers=count, ari_app="cc"), "users")
        assert "Stasis(cc,outbound,${EXTEN})" in conf  # a single app: the last resort
        for first in range(1, count + 1):
            tries = _tries(conf, "cc", first)
            assert tries[0] == first and sorted(tries) == list(range(1, count + 1))


def test_the_pbx_loads_the_global_function_the_round_robin_needs() -> None:
    # modules.conf has autoload=no: without func_global, GLOBAL() is "not registered",
    # the counter never moves and every call picks worker 1 (seen on Asterisk 22)
    modules = (EXTENSIONS.parent / "modules.conf").read_text()
    assert "GLOBAL(" in workers_conf(Settings(workers=2), "carrier")
    assert re.search(r"^load => func_global\.so", modules, re.MULTILINE)


def test_serve_can_tell_which_workers_the_installed_dialplan_was_written_for(
    tmp_path: Path,
) -> None:
    from callcontrol.pbx.dialplan import dialplan_workers

    assert dialplan_workers(tmp_path) is None  # no PBX of ours here
    for name, side in WORKERS_FILES.items():
        (tmp_path / name).write_text(workers_conf(Settings(workers=3, ari_app="cc"), side))
    assert dialplan_workers(tmp_path) == (3, "cc")
    (tmp_path / "extensions_workers_carrier.conf").write_text(workers_conf(Settings(), "carrier"))
    assert dialplan_workers(tmp_path) == (1, "callcontrol")
