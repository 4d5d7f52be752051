"""Beyond capacity and on our own failures: refused before answer, never charged,
nothing left open or held."""

from __future__ import annotations

import asyncio

import pytest
from calls_harness import ROUTED, App, StartApp

from callcontrol.calls import call as call_module
from callcontrol.calls.admission import Admission, AdmissionLimits
from callcontrol.domain.call_records import Disposition
from callcontrol.domain.charging import ChargeState

CARRIER = "1715000000.1"


def admission(
    *, in_setup: int = 100, lag: float = 0.1, latency: float = 0.5, ari: float = 0.0
) -> Admission:
    return Admission(AdmissionLimits(in_setup, lag, latency), ari_latency=lambda: ari)


async def test_a_call_answered_but_never_bridged_is_not_charged(app: App) -> None:
    before = await app.wallet.balance()
    call = await app.carrier_call(CARRIER, ROUTED)
    gate = app.fake.gate("POST", f"/ari/bridges/{call.call_id}/addChannel")
    await app.answer(call)
    await app.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
    app.fake.fail_next(404, "Channel not found")  # the caller left while we were slow
    gate.set()
    record = await app.ended(call)

    assert app.requests("POST", f"/ari/channels/{CARRIER}/answer")  # the carrier saw 200
    assert record.disposition == Disposition.FAILED
    assert record.answered_at is None  # never connected to a user or a flow
    assert (record.charge_state, record.cost_micro) == (ChargeState.SETTLED, 0)
    after = await app.wallet.balance()
    assert (after.balance, after.held) == (before.balance, 0)
    assert await app.wallet.audit() == []


async def test_beyond_capacity_new_calls_are_refused_before_answer(
    start_app: StartApp,
) -> None:
    app = await start_app(admission=admission(in_setup=1))
    first = await app.carrier_call(CARRIER, ROUTED)  # rings alice: in setup
    await app.originated(first)

    app.fake.add_channel("1715000000.2", exten=ROUTED)
    await app.send(
        "StasisStart", channel=app.fake.channel("1715000000.2"), args=["inbound", ROUTED]
    )
    refused = await app.request("POST", "/ari/channels/1715000000.2/continue")
    assert refused.query["context"] == "callcontrol-unavailable"  # early media, cause 34
    assert app.requests("POST", "/ari/channels/1715000000.2/answer") == []
    assert list(app.manager.calls) == [first.call_id]  # no call, no record for it
    assert [r.call_id for r in await app.store.open_records()] == [first.call_id]

    callee = await app.answer(first)  # connected: out of setup, and never dropped
    await app.connected(first, callee)
    third = await app.carrier_call("1715000000.3", ROUTED)
    await app.originated(third)
    assert set(app.manager.calls) == {first.call_id, third.call_id}
    assert app.ctx.admission is not None and app.ctx.admission.refused == 1


def test_admission_follows_loop_lag_and_ari_latency_with_hysteresis() -> None:
    gate = admission()
    assert gate.admit() is None
    gate.loop_lag = 0.15
    assert gate.admit() == "event loop 150 ms late"
    gate.loop_lag = 0.07  # below the limit, not yet below half of it
    assert gate.admit() == "recovering from overload"
    gate.loop_lag = 0.04
    assert gate.admit() is None
    slow = admission(ari=0.8)
    assert slow.admit() == "ARI answers in 800 ms"
    assert (gate.refused, slow.refused) == (2, 1)


async def test_admission_measures_the_event_loop_lag() -> None:
    gate = admission()
    task = asyncio.create_task(gate.run())
    await asyncio.sleep(0.05)
    end = asyncio.get_running_loop().time() + 0.2
    while asyncio.get_running_loop().time() < end:  # the loop is blocked for 200 ms
        pass
    await asyncio.sleep(0.03)
    task.cancel()
    assert gate.loop_lag > 0.1
    assert gate.admit() is not None


async def test_a_cleanup_past_its_deadline_still_settles_the_call(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(call_module, "CLEANUP_DEADLINE", 0.2)
    call = await app.carrier_call(CARRIER, ROUTED)
    callee = await app.answer(call)
    await app.connected(call, callee)
    stuck = app.fake.gate("DELETE", f"/ari/channels/{callee}")  # Asterisk does not answer
    task = app.manager.tasks[call.call_id]
    app.clock.advance(10)
    await app.hang_up(CARRIER)
    await asyncio.wait_for(task, 5)  # the cleanup gave up on the hang-up ...
    assert app.manager.side_tasks  # ... and handed the settlement over
    await asyncio.wait_for(asyncio.gather(*app.manager.side_tasks), 5)  # retried after 1 s
    stuck.set()

    record = await app.store.get(call.call_id)
    assert record is not None and not record.is_open
    assert record.charge_state == ChargeState.SETTLED
    assert record.billable_seconds == 10  # the talk time ended at the hangup
    assert (await app.wallet.balance()).held == 0
    assert await app.wallet.audit() == []


async def test_a_slow_setup_refuses_new_calls_until_it_fades() -> None:
    gate = admission()
    for _ in range(10):
        gate.took(2.0)  # calls waited 2 s before they rang: the app is behind
    assert (gate.admit() or "").startswith("calls wait 1")
    gate._delay_at -= 3  # three half-lives without a call: about 1/8 of it is left
    assert gate.setup_delay() < 0.25
    assert gate.admit() is None
