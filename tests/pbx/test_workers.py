"""Several app processes on one PBX (setting workers): the dialplan spreads the calls
over the workers' Stasis applications, charging stays exact across the processes on
one SQLite file, and a worker killed mid-call is restarted by worker 1 and re-adopts
its own call while new calls go to the worker still up.

The PBX's dialplan is re-installed for the workers (`callcontrol pbx up`, a reload)
and put back as it was after each test: the other PBX tests expect one app.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from log_contract import (
    ARI_APP,
    IVR_STEP,
    MEDIA_SERVED,
    WORKER_EXITED,
    WORKER_STARTED,
    WORKER_STOPPED,
)
from pbx_harness import FLOW_NUMBER, ROUTED, AppProcess, Carrier, Org, Phones, make_org
from test_ivr import SPOKEN_FLOW, ivr  # noqa: F401 (a fixture)
from test_outbound import DESTINATION, RATES_CSV, carrier_answers, user_dials

from callcontrol.config import Settings
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.pbx.devpbx import DevPbx
from callcontrol.pbx.dtmf import Dtmf, Pause

pytestmark = pytest.mark.pbx

NODE = "pbx-w"
ADOPTION = r"pbx node (?P<node>\S+): (?P<open>\d+) open call records, (?P<tagged>\d+) tagged calls"


def dialplan_for(pbx: Settings, workers: int) -> Iterator[None]:
    DevPbx(pbx.model_copy(update={"workers": workers})).up()
    try:
        yield
    finally:
        DevPbx(pbx).up()  # one app again, for the other tests


@pytest.fixture
def two_workers_dialplan(pbx: Settings) -> Iterator[None]:
    yield from dialplan_for(pbx, 2)


@pytest.fixture
def three_workers_dialplan(pbx: Settings) -> Iterator[None]:
    yield from dialplan_for(pbx, 3)


async def workers_org(pbx: Settings, tmp_path: Path) -> Org:
    rates = tmp_path / "rates.csv"
    rates.write_text(RATES_CSV)  # inbound GB 0.1 a second; outbound DE 0.1 fee + 0.1 a second
    return await make_org(pbx, tmp_path, rates=rates)


async def start_workers(org: Org, workers: int = 2) -> AppProcess:
    """`serve` with workers = 2 (one process started by the test, the other by it),
    once both workers' applications are connected."""
    env = {"CALLCONTROL_WORKERS": str(workers), "CALLCONTROL_PBX_NODE": NODE}
    app = AppProcess(org, "workers", env)
    await app.start()  # worker 1 provisioned the endpoints
    for worker in range(1, workers + 1):
        await app.wait_log(ARI_APP, where=lambda m, k=worker: m["app"] == f"callcontrol-{k}")
    return app


async def check_money(org: Org, call_ids: list[str]) -> dict[str, list[str]]:
    """Every call answered and settled once; the ledger's call charges are the records'
    costs; nothing held, nothing open, the audit clean. The calls' ids by node."""
    records = {r.call_id: r for r in await org.records()}
    assert sorted(records) == sorted(call_ids)
    by_node: dict[str, list[str]] = {}
    wallet, db = await org.wallet()
    try:
        for record in records.values():
            assert (record.disposition, record.charge_state) == ("answered", "settled")
            assert record.ended_at is not None and record.cost_micro is not None
            assert record.cost_micro > 0
            assert await wallet.charged_for(record.call_id) == record.cost_micro
            assert record.pbx_node is not None
            by_node.setdefault(record.pbx_node, []).append(record.call_id)
        entries = await wallet.ledger(1000)
        charged = -sum(e.amount for e in entries if e.kind == LedgerKind.CALL_CHARGE)
        costs = sum(r.cost_micro or 0 for r in records.values())
        assert charged == costs
        state = await wallet.balance()
        assert (state.balance, state.held) == (100 * MICRO - costs, 0)
        assert await wallet.audit() == []
    finally:
        await db.dispose()
    return by_node


async def test_calls_are_spread_over_two_workers_and_charged_exactly(
    pbx: Settings, two_workers_dialplan: None, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await workers_org(pbx, tmp_path)
    app = await start_workers(org)
    try:
        phone = await phones.answering("alice", calls=6)
        calls = [await carrier.call(ROUTED, hang_up_after_ms=3000) for _ in range(6)]
        for call in calls:
            result = await call.wait(40)
            assert result.ok, result.explain()
        assert (await phone.wait(30)).ok
        inbound = await app.calls_released(6)
        # users' calls out go through the workers too (from-users-app)
        for n in range(2):
            far_end = await carrier_answers(tmp_path / f"out-{n}")
            call = await user_dials(
                tmp_path / f"out-{n}", "alice", DESTINATION, hang_up_after_ms=1000
            )
            c, f = await call.wait(40), await far_end.wait(40)
            assert c.ok, c.explain()
            assert f.ok, f.explain()
        outbound = (await app.calls_released(8))[6:]
    finally:
        assert await app.stop(signal.SIGTERM) == 0
    # worker 1 stopped worker 2 with itself
    assert [m["worker"] for line in app.lines if (m := WORKER_STOPPED.search(line))] == ["2"]
    by_node = await check_money(org, inbound + outbound)
    assert sorted(by_node) == [f"{NODE}/1", f"{NODE}/2"]  # both workers took calls
    for node, ids in by_node.items():  # each worker's lines name it
        worker = node.rsplit("/", 1)[1]
        for call_id in ids:
            said = {
                line.split(": ", 1)[0].rsplit("@", 1)[-1]
                for line in app.lines
                if f"[{call_id}] " in line
            }
            assert said == {f"w{worker}"}, (call_id, said)
    records = {r.call_id: r for r in await org.records()}
    assert sorted(records[c].pbx_node or "" for c in outbound) == [f"{NODE}/1", f"{NODE}/2"]
    assert {records[c].direction for c in outbound} == {"outbound"}


async def test_a_killed_worker_is_restarted_and_re_adopts_its_call_meanwhile_calls_go_on(
    pbx: Settings, two_workers_dialplan: None, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    org = await workers_org(pbx, tmp_path)
    app = await start_workers(org)
    try:
        phone = await phones.answering("alice", calls=4)
        # Round robin: two calls one after the other, one on each worker.
        first = await carrier.call(ROUTED, hang_up_after_ms=15_000)
        id_1 = await app.connected("alice")
        mark = app.mark()
        second = await carrier.call(ROUTED, hang_up_after_ms=12_000)
        id_2 = await app.connected("alice", after=mark)
        nodes = {(await org.record(i)).pbx_node: i for i in (id_1, id_2)}
        assert sorted(nodes) == [f"{NODE}/1", f"{NODE}/2"]
        on_worker_2 = nodes[f"{NODE}/2"]

        pid = int((await app.wait_log(WORKER_STARTED, where=lambda m: m["worker"] == "2"))["pid"])
        mark = app.mark()
        os.kill(pid, signal.SIGKILL)  # mid-call: nothing settled, nothing closed
        # Two new calls at once while worker 2 is down: whichever worker the dialplan
        # picks, worker 2's application is not connected, so both land on worker 1.
        during = [await carrier.call(ROUTED, hang_up_after_ms=2000) for _ in range(2)]
        exited = await app.wait_log(WORKER_EXITED, after=mark)
        assert (exited["worker"], exited["pid"], exited["how"], exited["code"]) == (
            "2",
            str(pid),
            "signal",
            "9",
        )
        adoption = await app.wait_log(
            ADOPTION, after=mark, where=lambda m: m["node"] == f"{NODE}/2"
        )
        # its own call only (the tagged calls it sees are every worker's: one PBX)
        assert adoption["open"] == "1"
        for call in (*during, first, second):
            result = await call.wait(40)
            assert result.ok, result.explain()
        assert (await phone.wait(30)).ok
        released = await app.calls_released(4, timeout=40)
    finally:
        await app.stop(signal.SIGTERM)
    assert on_worker_2 in released  # the restarted worker ran it to its end
    by_node = await check_money(org, released)
    during_ids = [c for c in released if c not in (id_1, id_2)]
    assert len(during_ids) == 2
    assert sorted(by_node[f"{NODE}/1"]) == sorted([nodes[f"{NODE}/1"], *during_ids])
    assert by_node[f"{NODE}/2"] == [on_worker_2]
    restarted = [m for line in app.lines if (m := WORKER_STARTED.search(line))]
    assert [m["worker"] for m in restarted] == ["2", "2"]
    record = await org.record(on_worker_2)
    assert (record.answered_at is not None and record.ended_at is not None) and (
        record.ended_at - record.answered_at
    ).total_seconds() >= 10  # kept up across the kill, to the caller's hang-up


async def test_a_worker_that_is_not_connected_passes_its_calls_to_the_next(
    pbx: Settings, three_workers_dialplan: None, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    """The dialplan knows 3 workers, 2 run: every third call picks worker 3, whose
    application Asterisk does not know (STASISSTATUS=FAILED), and goes on to worker 1."""
    org = await workers_org(pbx, tmp_path)
    app = await start_workers(org, workers=2)
    try:
        phone = await phones.answering("alice", calls=3)
        for _ in range(3):
            result = await (await carrier.call(ROUTED, hang_up_after_ms=1000)).wait(40)
            assert result.ok, result.explain()
        assert (await phone.wait(30)).ok
        released = await app.calls_released(3)
    finally:
        await app.stop(signal.SIGTERM)
    by_node = await check_money(org, released)
    assert sorted(len(ids) for ids in by_node.values()) == [1, 2]
    assert len(by_node[f"{NODE}/1"]) == 2  # its own turn and worker 3's


async def test_going_from_one_app_to_two_workers_keeps_the_call_in_progress(
    pbx: Settings, tmp_path: Path, phones: Phones, carrier: Carrier
) -> None:
    """A call of the single app (node pbx-w) is up when the PBX is switched to two
    workers: worker 1 takes the record of the node that no longer runs, follows the
    call (its channels still in the old application) to its end and settles it once."""
    org = await workers_org(pbx, tmp_path)
    single = await AppProcess(org, "single", {"CALLCONTROL_PBX_NODE": NODE}).start()
    try:
        phone = await phones.answering("alice")
        call = await carrier.call(ROUTED, hang_up_after_ms=12_000)
        call_id = await single.connected("alice")
    finally:
        assert await single.stop(signal.SIGTERM) == 0  # detached: the call stays up
    assert (await org.record(call_id)).pbx_node == NODE
    with contextlib.contextmanager(dialplan_for)(pbx, 2):
        app = await start_workers(org)
        try:
            adoption = await app.wait_log(ADOPTION, where=lambda m: m["node"] == f"{NODE}/1")
            assert adoption["open"] == "1"
            assert (await org.record(call_id)).pbx_node == f"{NODE}/1"  # claimed, once
            result = await call.wait(40)
            assert result.ok, result.explain()
            assert (await phone.wait(30)).ok
            assert await app.calls_released(1) == [call_id]
        finally:
            await app.stop(signal.SIGTERM)
    record = await org.record(call_id)
    assert (record.disposition, record.ended_by) == ("answered", "caller")
    assert record.answered_at is not None and record.ended_at is not None
    assert (record.ended_at - record.answered_at).total_seconds() >= 11
    assert await check_money(org, [call_id]) == {f"{NODE}/1": [call_id]}


async def test_ivr_calls_on_both_workers_play_prompts_worker_1_serves(
    pbx: Settings,
    two_workers_dialplan: None,
    ivr: Org,  # noqa: F811 (the fixture)
    phones: Phones,
    carrier: Carrier,
) -> None:
    """A flow with spoken and recorded prompts: worker 2's call plays them too, Asterisk
    fetching them from worker 1's media server (workers 2..N serve no HTTP)."""
    (Path(ivr.env["CALLCONTROL_FLOWS_DIR"]) / "test.yaml").write_text(SPOKEN_FLOW)
    app = await start_workers(ivr)
    try:
        phone = await phones.answering("alice", talk_ms=500, calls=2)
        calls = []
        for _ in range(2):  # one after the other: the round robin gives one to each
            mark = app.mark()
            calls.append(
                await carrier.dtmf_call(FLOW_NUMBER, [Pause(9000), Dtmf("1")], end="wait_bye")
            )
            await app.wait_log(IVR_STEP, after=mark, where=lambda m: m["step"] == "menu main")
        for call in calls:
            result = await call.wait(40)
            assert result.ok, result.explain()
        assert (await phone.wait(40)).ok
        released = await app.calls_released(2)
    finally:
        await app.stop(signal.SIGTERM)
    records = {r.call_id: r for r in await ivr.records()}
    assert sorted(records[c].pbx_node or "" for c in released) == [f"{NODE}/1", f"{NODE}/2"]
    for call_id in released:
        assert (records[call_id].disposition, records[call_id].user_name) == ("answered", "alice")
        played = [step for step in app.ivr_steps(call_id) if step.startswith("play ")]
        assert played and "barge-in" not in played[0], played  # played to the end
    served = [m for line in app.lines if (m := MEDIA_SERVED.search(line))]
    assert len([m for m in served if m["file"] == "welcome.wav"]) >= 2  # once per call
    assert not any("failed to play" in line for line in app.lines)
    assert (await ivr.wallet_state())[1:] == (0, [])
