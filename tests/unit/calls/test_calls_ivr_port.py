"""AriCallPort: the IVR interpreter on an answered incoming call, driven by DTMF events."""

from __future__ import annotations

from pathlib import Path

from calls_harness import FLOW_NUMBER, INBOUND_FEE, App, StartApp

from callcontrol.calls.ivr_port import DIGIT_BUFFER
from callcontrol.domain.call_records import Disposition, EndedBy
from callcontrol.domain.charging import ChargeState

CARRIER = "1715000000.1"

FLOW = """\
start: main
menus:
  main:
    prompts: [hello-world]
    options:
      "1": repeat
      "2": sales
      "3": { ring: bob }
    timeout: 5
    on_failure: hangup
  sales:
    prompts: [tt-monkeys]
    options:
      "3": { ring: bob }
    timeout: 5
    on_failure: hangup
"""


async def flow_app(start_app: StartApp, tmp_path: Path) -> App:
    (tmp_path / "flows").mkdir(exist_ok=True)
    (tmp_path / "flows" / "main.yaml").write_text(FLOW)
    return await start_app(flows=True)


async def test_keys_drive_the_flow_to_ring_a_user_who_takes_the_call(
    start_app: StartApp, tmp_path: Path
) -> None:
    app = await flow_app(start_app, tmp_path)
    call = await app.carrier_call(CARRIER, FLOW_NUMBER)
    await app.request("POST", f"/ari/channels/{CARRIER}/answer")  # a flow answers at once
    welcome = await app.request("POST", f"/ari/channels/{CARRIER}/play")
    assert welcome.query["media"] == "sound:hello-world"

    await app.press(CARRIER, "2")  # barge-in: the prompt stops, "sales" starts
    await app.request("DELETE", f"/ari/playbacks/{welcome.query['playbackId']}")
    sales = await app.request("POST", f"/ari/channels/{CARRIER}/play", count=2)
    assert sales.query["media"] == "sound:tt-monkeys"

    await app.press(CARRIER, "3")
    originate = await app.originated(call)
    assert originate.query["endpoint"] == "PJSIP/1002"
    assert originate.query["appArgs"] == f"dialed,{call.call_id}"
    ringback = await app.request("POST", f"/ari/channels/{CARRIER}/play", count=3)
    assert ringback.query["media"] == "tone:ring"  # the answered caller hears ringing

    bob = await app.answer(call)
    await app.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
    assert app.requests("DELETE", f"/ari/playbacks/{ringback.query['playbackId']}")
    app.clock.advance(5)
    await app.hang_up(bob)
    record = await app.ended(call)

    assert app.requests("DELETE", f"/ari/channels/{CARRIER}")  # the caller is released
    assert record.disposition == Disposition.ANSWERED
    assert record.ended_by is EndedBy.CALLEE
    assert record.user_name == "bob"
    assert record.charge_state == ChargeState.SETTLED
    assert record.billable_seconds == 5  # charged from the flow's answer
    assert record.cost_micro is not None and record.cost_micro > INBOUND_FEE
    assert await app.wallet.open_holds() == []
    assert await app.wallet.audit() == []
    assert app.router.subscribers == 0


async def test_a_key_flood_keeps_the_first_keys_and_drops_the_rest(
    start_app: StartApp, tmp_path: Path
) -> None:
    app = await flow_app(start_app, tmp_path)
    answer = app.fake.gate("POST", f"/ari/channels/{CARRIER}/answer")
    call = await app.carrier_call(CARRIER, FLOW_NUMBER)
    await app.request("POST", f"/ari/channels/{CARRIER}/answer")
    # The caller types 40 keys before the first prompt: the first 32 are kept, and
    # the 32nd ("2") goes to "sales"; the 8 after it ("3": ring bob) are dropped.
    keys = "1" * (DIGIT_BUFFER - 1) + "2" + "3" * 8
    await app.press(CARRIER, keys)
    answer.set()

    first = await app.request("POST", f"/ari/channels/{CARRIER}/play")
    assert first.query["media"] == "sound:tt-monkeys"  # "main" never had to play
    assert app.requests("DELETE", f"/ari/playbacks/{first.query['playbackId']}") == []
    assert app.requests("POST", "/ari/channels") == []  # bob was never rung

    await app.hang_up(CARRIER)
    record = await app.ended(call)
    assert app.requests("POST", "/ari/channels") == []
    assert len(app.requests("POST", f"/ari/channels/{CARRIER}/play")) == 1
    assert record.ended_by is EndedBy.CALLER


async def test_the_caller_hanging_up_mid_prompt_ends_the_flow_and_the_call(
    start_app: StartApp, tmp_path: Path
) -> None:
    app = await flow_app(start_app, tmp_path)
    call = await app.carrier_call(CARRIER, FLOW_NUMBER)
    await app.request("POST", f"/ari/channels/{CARRIER}/play")
    app.clock.advance(3)
    await app.hang_up(CARRIER)
    record = await app.ended(call)

    assert app.requests("DELETE", f"/ari/channels/{CARRIER}") == []  # already gone
    assert app.requests("POST", "/ari/channels") == []
    assert record.disposition == Disposition.ANSWERED  # the flow answered it
    assert record.ended_by is EndedBy.CALLER
    assert record.hangup_cause == 16
    assert record.billable_seconds == 3
    assert await app.wallet.open_holds() == []
    assert await app.wallet.audit() == []
    assert call.own_tasks and all(task.done() for task in call.own_tasks)
    assert app.router.subscribers == 0
