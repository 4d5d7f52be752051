"""Reading the PBX's CDR file (the lines Asterisk 22's cdr_custom writes with
dialplan/cdr_custom.conf) and AMI Hangup events: when did a call really end."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callcontrol.ami.records import (
    PbxRecords,
    _lines_backwards,
    hangup_time,
    parse_cdr_line,
    read_cdr_rows,
    talk_end,
)

# Lines as Asterisk 22.10 wrote them for a carrier call that alice answered and the
# carrier ended after 6 s (the caller's row, then alice's own short row).
CALLER = (
    '"1795810338.23","1795810338.23","PJSIP/carrier-00000017","PJSIP/1001-00000018",'
    '"1795810338.016619","1795810338.395719","1795810344.406728","6","6","ANSWERED"'
)
CALLEE = (
    '"fa7e3fcbba0f494db53757ac0c112190-callee-1","1795810338.23","PJSIP/1001-00000018","",'
    '"1795810338.087386","1795810338.394148","1795810338.404645","0","0","ANSWERED"'
)
UNANSWERED = (
    '"1795810400.30","1795810400.30","PJSIP/carrier-00000020","",'
    '"1795810400.000001","0.000000","1795810404.500000","4","0","NO ANSWER"'
)


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def test_a_cdr_line_as_asterisk_writes_it() -> None:
    row = parse_cdr_line(CALLER)
    assert row is not None
    assert (row.uniqueid, row.linkedid, row.dstchannel) == (
        "1795810338.23",
        "1795810338.23",
        "PJSIP/1001-00000018",
    )
    assert (row.start, row.answer, row.end) == (
        at(1795810338.016619),
        at(1795810338.395719),
        at(1795810344.406728),
    )
    assert (row.billsec, row.disposition) == (6, "ANSWERED")


def test_an_unanswered_leg_has_no_answer_time() -> None:
    row = parse_cdr_line(UNANSWERED)
    assert row is not None and row.answer is None and row.disposition == "NO ANSWER"


@pytest.mark.parametrize(
    "line",
    [
        "",
        '"1795810338.23","1795810338.23","PJSIP/carrier-00000017"',  # torn: being written
        CALLER.replace('"1795810344.406728"', '"2026-11-27 20:12:24"'),  # not this format
        CALLER.replace('"6","6"', '"6","six"'),
        CALLER.replace('"1795810338.23","1795810338.23"', '"","1795810338.23"'),
        '"unterminated',
    ],
)
def test_lines_that_are_not_cdrs_are_skipped(line: str) -> None:
    assert parse_cdr_line(line) is None


def test_the_rows_of_the_asked_channels_only(tmp_path: Path) -> None:
    path = tmp_path / "callcontrol-cdr.csv"
    path.write_text("\n".join([CALLER, CALLEE, UNANSWERED, '"1795810338.23","torn']) + "\n")
    rows = read_cdr_rows(path, ["1795810338.23", "1795819999.1"])
    assert [r.end for r in rows["1795810338.23"]] == [at(1795810344.406728)]
    assert rows["1795819999.1"] == []


def test_the_talk_ends_when_the_last_bridge_of_the_caller_ended() -> None:
    bridged = parse_cdr_line(CALLER)
    alone = parse_cdr_line(
        CALLER.replace('"PJSIP/1001-00000018"', '""').replace(
            '"1795810344.406728"', '"1795810350.000000"'
        )
    )
    assert bridged is not None and alone is not None
    # Left alone in the bridge after alice hung up: the silence is not talk.
    assert talk_end([bridged, alone]) == at(1795810344.406728)
    # Never bridged (answered into a flow): its hang-up.
    assert talk_end([alone]) == at(1795810350.0)
    assert talk_end([]) is None


def test_hangup_events_with_a_timestamp() -> None:
    event = {"Event": "Hangup", "Uniqueid": "1795810338.23", "Timestamp": "1795810344.406728"}
    assert hangup_time(event) == ("1795810338.23", at(1795810344.406728))
    assert hangup_time({**event, "Event": "HangupRequest"}) is None
    assert hangup_time({"Event": "Hangup", "Uniqueid": "1795810338.23"}) is None


async def test_the_cdr_first_then_ami_hangups_then_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "callcontrol-cdr.csv"
    path.write_text(CALLER + "\n")
    records = PbxRecords(path)
    records.on_event({"Event": "Hangup", "Uniqueid": "1795810338.23", "Timestamp": "1"})
    records.on_event({"Event": "Hangup", "Uniqueid": "1795810500.1", "Timestamp": "1795810501"})
    assert await records.call_end("1795810338.23") == (at(1795810344.406728), "cdr")
    assert await records.call_end("1795810500.1") == (at(1795810501), "ami")
    assert await records.call_end("1795810600.1") is None

    path.unlink()  # a PBX on another host, or a wrong cdr_file: said, then AMI
    with caplog.at_level(logging.WARNING, logger="callcontrol.ami.records"):
        assert await records.call_end("1795810500.1") == (at(1795810501), "ami")
    assert caplog.records[0].getMessage() == (
        f"cannot read the PBX's CDR file {path}: No such file or directory"
    )


def test_only_the_newest_hangups_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("callcontrol.ami.records.HANGUPS_KEPT", 2)
    records = PbxRecords(None)
    for n in range(3):
        records.on_event({"Event": "Hangup", "Uniqueid": f"1.{n}", "Timestamp": f"1795810{n}"})
    assert list(records._hangups) == ["1.1", "1.2"]


def row_line(uniqueid: str, end: float) -> str:
    return (
        f'"{uniqueid}","{uniqueid}","PJSIP/carrier-1","PJSIP/1001-2",'
        f'"{end - 10:.6f}","{end - 9:.6f}","{end:.6f}","10","9","ANSWERED"'
    )


def test_from_the_end_back_to_shortly_before_the_call_began(tmp_path: Path) -> None:
    t0 = 1795810000.0
    lines = [row_line(f"{t0 + n:.0f}.1", t0 + n) for n in range(0, 3000, 10)]  # 50 min
    lines.insert(5, row_line("1795819999.9", t0 + 50))  # a reused id, long before
    lines.append(row_line("1795819999.9", t0 + 2995))
    path = tmp_path / "callcontrol-cdr.csv"
    path.write_text("\n".join(lines) + "\n" + '"1795810000.1","torn')
    since = at(t0 + 2900)
    rows = read_cdr_rows(path, ["1795819999.9", f"{t0 + 2700:.0f}.1"], since)
    assert [r.end for r in rows["1795819999.9"]] == [at(t0 + 2995)]  # not the old one
    assert [r.end for r in rows[f"{t0 + 2700:.0f}.1"]] == [at(t0 + 2700)]  # in the margin
    everything = read_cdr_rows(path, ["1795819999.9"])
    assert [r.end for r in everything["1795819999.9"]] == [at(t0 + 50), at(t0 + 2995)]


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 16])
def test_lines_backwards_across_blocks(tmp_path: Path, block: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"one\ntwo\n\nthree\nfour")
    with path.open("rb") as fh:
        assert list(_lines_backwards(fh, block)) == [b"four", b"three", b"", b"two", b"one"]
