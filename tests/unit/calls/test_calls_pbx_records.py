"""Calls that ended while no app was connected are settled at the end the PBX recorded
(a CDR file as dialplan/cdr_custom.conf makes Asterisk write it), not at the restart;
without a record, at the restart, as the crash rule always did."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from calls_harness import INBOUND_FEE, INBOUND_PER_SECOND, ROUTED, App, StartApp
from sqlalchemy import update
from test_calls_log_contract import contract

from callcontrol.ami.records import PbxRecords
from callcontrol.calls.call import Call, utcnow
from callcontrol.domain.call_records import CallRecord, Disposition, EndedBy
from callcontrol.domain.charging import ChargeState
from callcontrol.store.models import CallRecordRow


def cdr_line(uniqueid: str, dst: str, start: datetime, answer: datetime, end: datetime) -> str:
    """One line in the field order of dialplan/cdr_custom.conf, quoted as Asterisk does."""
    billsec = int((end - answer).total_seconds())
    fields = [
        uniqueid,
        uniqueid,
        "PJSIP/carrier-00000001",
        dst,
        f"{start.timestamp():.6f}",
        f"{answer.timestamp():.6f}",
        f"{end.timestamp():.6f}",
        str(billsec),
        str(billsec),
        "ANSWERED",
    ]
    return ",".join(f'"{f}"' for f in fields) + "\n"


async def connected_a_minute_ago(app: App, carrier: str) -> tuple[Call, str, datetime]:
    """A carrier call to alice, bridged, its answer moved 60 s into the past (as if it
    had talked that long): the call, alice's channel and the answer time."""
    call = await app.carrier_call(carrier, ROUTED)
    callee = await app.answer(call)
    await app.connected(call, callee)
    answered = utcnow() - timedelta(seconds=60)
    async with app.db.session() as session:
        await session.execute(
            update(CallRecordRow)
            .where(CallRecordRow.call_id == call.call_id)
            .values(answered_at=answered)
        )
    return call, callee, answered


async def settled(app: App, call_id: str) -> CallRecord:
    record = await app.store.get(call_id)
    assert record is not None and record.charge_state == ChargeState.SETTLED
    assert await app.wallet.hold_of(call_id) == 0
    assert await app.wallet.charged_for(call_id) == record.cost_micro
    return record


async def test_lost_calls_end_at_their_cdr_end_else_at_the_restart(
    start_app: StartApp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = await start_app()
    recorded, recorded_callee, answered = await connected_a_minute_ago(first, "1715000000.1")
    unrecorded, unrecorded_callee, _ = await connected_a_minute_ago(first, "1715000000.2")
    await first.manager.shutdown(detach=True)
    await first.close()
    fake = first.fake
    await fake.wait_until(lambda: fake.open_sockets == 0)
    for channel in ("1715000000.1", recorded_callee, "1715000000.2", unrecorded_callee):
        del fake.channels[channel]  # both calls ended while no app was connected
    # The PBX's record of the first: bridged with alice for 7.4 s, then 2 s alone.
    bridged_end = answered + timedelta(seconds=7.4)
    cdr = tmp_path / "callcontrol-cdr.csv"
    cdr.write_text(
        cdr_line("1715000000.9", "", answered, answered, answered)  # another call
        + cdr_line("1715000000.1", "PJSIP/1001-00000002", answered, answered, bridged_end)
        + cdr_line("1715000000.1", "", answered, answered, bridged_end + timedelta(seconds=2))
        + '"1715000000.2","torn'  # a line Asterisk is still writing: ignored
    )
    restarted = utcnow()
    with caplog.at_level(logging.INFO, logger="callcontrol.calls.manager"):
        second = await start_app(pbx_records=PbxRecords(cdr))

    record = await settled(second, recorded.call_id)
    assert (record.ended_at, record.ended_by) == (bridged_end, EndedBy.PBX)
    assert record.disposition == Disposition.ANSWERED
    assert record.billable_seconds == 7  # whole seconds, as every settlement
    assert record.cost_micro == INBOUND_FEE + 7 * INBOUND_PER_SECOND

    fallback = await settled(second, unrecorded.call_id)
    assert fallback.ended_at is not None and fallback.ended_at >= restarted
    assert fallback.billable_seconds is not None and fallback.billable_seconds >= 60
    messages = [r.getMessage() for r in caplog.records]
    assert "no PBX record of the end of channel 1715000000.2: settled as ended now" in messages
    # The line the PBX tests wait for (tests/pbx/log_contract.py), with the end in it.
    ends = [m for line in messages if (m := contract.PBX_END.search(line))]
    assert [(m["time"], m["source"]) for m in ends] == [
        (bridged_end.isoformat(timespec="milliseconds"), "CDR")
    ]
    assert await second.wallet.audit() == []


async def test_a_caller_gone_while_away_pays_until_the_cdr_says_it_hung_up(
    start_app: StartApp, tmp_path: Path
) -> None:
    first = await start_app()
    call, callee, answered = await connected_a_minute_ago(first, "1715000000.1")
    await first.manager.shutdown(detach=True)
    await first.close()
    fake = first.fake
    await fake.wait_until(lambda: fake.open_sockets == 0)
    del fake.channels["1715000000.1"]  # the caller hung up; alice's leg stayed up alone
    hung_up = answered + timedelta(seconds=12.8)
    cdr = tmp_path / "callcontrol-cdr.csv"
    cdr.write_text(cdr_line("1715000000.1", f"PJSIP/{callee}", answered, answered, hung_up))

    second = await start_app(pbx_records=PbxRecords(cdr))
    record = await second.ended(call)  # re-adopted, ended at once: its caller is gone

    assert (record.ended_at, record.ended_by) == (hung_up, EndedBy.CALLER)
    assert record.billable_seconds == 12
    assert record.cost_micro == INBOUND_FEE + 12 * INBOUND_PER_SECOND
    assert await second.wallet.charged_for(call.call_id) == record.cost_micro
    assert fake.channels == {}  # alice's leg was hung up
    assert await second.wallet.audit() == []
