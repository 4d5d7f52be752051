"""IVR flows through the real PBX: the carrier presses keys (RFC 4733 from sipp).

Each test runs a flow written for it ("test", below) so that its timers are short
and its prompts known; the number FLOW_NUMBER is routed to it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from log_contract import FLOW_ERROR, FLOW_SERVES, IVR_STEP, MEDIA_SERVED, RELEASED
from pbx_harness import FLOW_NUMBER, AppProcess, Carrier, Org, Phones

from callcontrol.pbx.dtmf import Dtmf, Pause

pytestmark = pytest.mark.pbx

TEST_FLOW = """\
start: main
menus:
  main:
    prompts: [tt-weasels]          # 2.9 s: a key at 0.8 s interrupts it (barge-in)
    options:
      "1": {ring: alice}
      "2": support
      "9":
        dial: {max_digits: 4, digit_timeout: 2, prompts: [beep]}
      "#": hangup
    timeout: 2
    retries: 1
    timeout_prompts: [beep]
    invalid_prompts: [beep]
    on_failure: {ring: bob}
  support:
    prompts: [beep]
    options:
      "1": {ring: bob}
      "*": main
    timeout: 3
    retries: 0
    on_failure: hangup
"""


def is_test_flow(match: re.Match[str]) -> bool:
    return match["name"] == "test"


@pytest.fixture
async def ivr(org: Org) -> Org:
    flows = Path(org.env["CALLCONTROL_FLOWS_DIR"])
    (flows / "test.yaml").write_text(TEST_FLOW)
    directory, db = await org.directory()
    try:
        await directory.route_to_flow(FLOW_NUMBER, "test")
    finally:
        await db.dispose()
    return org


@pytest.fixture
async def ivr_app(ivr: Org) -> AppProcess:
    app = AppProcess(ivr)
    await app.start()
    yield app  # type: ignore[misc]
    await app.stop()


async def answered_by(app: AppProcess, org: Org, user: str) -> str:
    """The one call, released: the flow connected it to ``user``; its id."""
    [call_id] = await app.calls_released(1)
    record = await org.record(call_id)
    assert (record.disposition, record.user_name) == ("answered", user)
    return call_id


async def test_a_key_rings_the_right_user_and_interrupts_the_prompt(
    ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    phone = await phones.answering("alice")
    call = await carrier.dtmf_call(FLOW_NUMBER, [Pause(800), Dtmf("1")], end="wait_bye")
    call_id = await ivr_app.connected("alice", timeout=40)
    steps = ivr_app.ivr_steps(call_id)
    assert steps[:2] == ["menu main", "play sound:tt-weasels -> 1 (barge-in)"], steps
    phone_result = await phone.wait(40)  # alice talks until the PBX hangs up (she waits)
    call.kill()
    await call.wait(5)
    assert phone_result.received()[0].startswith("INVITE")


async def test_a_submenu_then_a_key(
    ivr: Org, ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    phone = await phones.answering("bob", talk_ms=1000)
    call = await carrier.dtmf_call(
        FLOW_NUMBER, [Pause(500), Dtmf("2"), Pause(1200), Dtmf("1")], end="wait_bye"
    )
    assert (await phone.wait(30)).ok
    assert (await call.wait(30)).ok
    call_id = await answered_by(ivr_app, ivr, "bob")
    assert (await ivr.record(call_id)).ended_by == "callee"
    assert "menu support" in ivr_app.ivr_steps(call_id)


async def test_no_key_retries_on_timeout_then_the_fallback(
    ivr: Org, ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    phone = await phones.answering("bob", talk_ms=500)
    call = await carrier.dtmf_call(FLOW_NUMBER, [Pause(200)], end="wait_bye", wait_bye_ms=40_000)
    assert (await phone.wait(60)).ok
    assert (await call.wait(60)).ok
    call_id = await answered_by(ivr_app, ivr, "bob")  # on_failure after the retry timed out too
    steps = ivr_app.ivr_steps(call_id)
    assert sum(step.startswith("timeout, attempt") for step in steps) == 2, steps


async def test_invalid_keys_then_the_fallback(
    ivr: Org, ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    phone = await phones.answering("bob", talk_ms=500)
    call = await carrier.dtmf_call(
        FLOW_NUMBER, [Pause(500), Dtmf("7"), Pause(800), Dtmf("7")], end="wait_bye"
    )
    assert (await phone.wait(60)).ok
    assert (await call.wait(60)).ok
    call_id = await answered_by(ivr_app, ivr, "bob")
    steps = ivr_app.ivr_steps(call_id)
    assert sum(step.startswith("invalid, attempt") for step in steps) == 2, steps


async def test_direct_dial_of_an_extension(
    ivr: Org, ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    phone = await phones.answering("bob", talk_ms=500)
    call = await carrier.dtmf_call(
        FLOW_NUMBER, [Pause(500), Dtmf("9"), Pause(700), Dtmf("1002#")], end="wait_bye"
    )
    assert (await phone.wait(30)).ok
    assert (await call.wait(30)).ok
    call_id = await answered_by(ivr_app, ivr, "bob")
    assert any(step.startswith("dial 1002 ->") for step in ivr_app.ivr_steps(call_id))


async def test_caller_hangs_up_mid_menu_and_nothing_of_the_call_is_left(
    ivr: Org, ivr_app: AppProcess, carrier: Carrier
) -> None:
    call = await carrier.dtmf_call(FLOW_NUMBER, [Pause(1500)], end="hangup")
    assert (await call.wait(30)).ok
    match = await ivr_app.wait_log(RELEASED)
    assert (match["tasks"], match["live"], match["subscriptions"]) == ("0", "0", "0")
    assert not any("left tasks behind" in line for line in ivr_app.lines)
    record = await ivr.record(match["call_id"])
    assert (record.ended_by, record.user_name) == ("caller", None)
    assert ivr_app.ivr_steps(match["call_id"])[-1] == "end: caller hung up"


async def test_a_garbage_key_flood_does_not_break_the_call(
    ivr: Org, ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    bob = await phones.answering("bob", talk_ms=500)
    flood = "5*5*5*5*5*5*5*5*5*5*5*5*5*5*5*5*5*5*5*5"
    call = await carrier.dtmf_call(
        FLOW_NUMBER,
        [Pause(300), Dtmf(flood, gap_ms=20, duration_ms=60)],
        end="wait_bye",
        wait_bye_ms=40_000,
    )
    assert (await bob.wait(30)).ok
    assert (await call.wait(30)).ok
    # Keys that mean nothing use up the retries; the menu's on_failure rings bob.
    call_id = await answered_by(ivr_app, ivr, "bob")  # released, nothing left behind
    steps = ivr_app.ivr_steps(call_id)
    assert sum(step.startswith("invalid key") for step in steps) >= 2, steps


async def test_a_flow_edited_during_a_call(
    ivr: Org, ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    flows = Path(ivr.env["CALLCONTROL_FLOWS_DIR"])
    old_version = (await ivr_app.wait_log(FLOW_SERVES, where=is_test_flow))["version"]
    first = await carrier.dtmf_call(FLOW_NUMBER, [Pause(4000), Dtmf("1")], end="wait_bye")
    first_id = (await ivr_app.wait_log(IVR_STEP))["call_id"]  # its flow runs: version fixed
    mark = ivr_app.mark()
    (flows / "test.yaml").write_text(TEST_FLOW.replace('"1": {ring: alice}', '"1": {ring: bob}'))
    new_version = (await ivr_app.wait_log(FLOW_SERVES, after=mark, where=is_test_flow))["version"]
    assert new_version != old_version
    alice = await phones.answering("alice", talk_ms=500)
    # The call in progress keeps its version: key 1 still rings alice.
    assert (await alice.wait(30)).ok
    assert (await first.wait(30)).ok
    assert await ivr_app.calls_released(1) == [first_id]
    assert (await ivr.record(first_id)).user_name == "alice"
    bob = await phones.answering("bob", talk_ms=500)
    second = await carrier.dtmf_call(FLOW_NUMBER, [Pause(500), Dtmf("1")], end="wait_bye")
    assert (await bob.wait(30)).ok
    assert (await second.wait(30)).ok
    second_id = (await ivr_app.calls_released(2))[1]
    record = await ivr.record(second_id)  # a new call runs the new version: key 1 rings bob
    assert (record.disposition, record.user_name) == ("answered", "bob")


async def test_an_invalid_edit_is_refused_and_calls_go_on(
    ivr: Org, ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    flows = Path(ivr.env["CALLCONTROL_FLOWS_DIR"])
    await ivr_app.wait_log(FLOW_SERVES, where=is_test_flow)
    mark = ivr_app.mark()
    (flows / "test.yaml").write_text(TEST_FLOW.replace("retries: 1", "retries: 1\n    colour: red"))
    error = await ivr_app.wait_log(
        FLOW_ERROR,
        after=mark,
        where=lambda m: m["file"].endswith("test.yaml") and "colour" in m["message"],
    )
    assert int(error["line"]) > 0 and int(error["column"]) > 0
    phone = await phones.answering("alice", talk_ms=500)
    call = await carrier.dtmf_call(FLOW_NUMBER, [Pause(500), Dtmf("1")], end="wait_bye")
    assert (await phone.wait(30)).ok
    assert (await call.wait(30)).ok
    await answered_by(ivr_app, ivr, "alice")
    # The version served before the edit serves on: no other took its place.
    assert not any(FLOW_SERVES.search(line) for line in ivr_app.lines[mark:])


SPOKEN_FLOW = """\
start: main
menus:
  main:
    prompts:
      - say: Hello from the test flow.
      - file: recordings/welcome.wav
    options:
      "1": {ring: alice}
    timeout: 10
    retries: 0
    on_failure: hangup
"""


async def test_spoken_and_recorded_prompts_reach_asterisk_over_http(
    ivr: Org, phones: Phones, carrier: Carrier
) -> None:
    """The chrooted Asterisk cannot see the app's files: it plays them over HTTP,
    as an Asterisk on another host would."""
    flows = Path(ivr.env["CALLCONTROL_FLOWS_DIR"])
    (flows / "test.yaml").write_text(SPOKEN_FLOW)
    app = await AppProcess(ivr).start()
    try:
        phone = await phones.answering("alice", talk_ms=500)
        call = await carrier.dtmf_call(FLOW_NUMBER, [Pause(9000), Dtmf("1")], end="wait_bye")
        for name in (r"tts-\w+\.wav", r"welcome\.wav"):  # Asterisk fetched them over HTTP
            await app.wait_log(
                MEDIA_SERVED,
                timeout=20,
                where=lambda m, name=name: (
                    re.fullmatch(name, m["file"]) is not None and m["address"] == "127.0.0.1"
                ),
            )
        assert (await phone.wait(30)).ok
        assert (await call.wait(30)).ok
        call_id = await answered_by(app, ivr, "alice")
        played = [step for step in app.ivr_steps(call_id) if step.startswith("play ")]
        assert played and "barge-in" not in played[0], played  # played to the end
        assert not any("failed to play" in line for line in app.lines)
    finally:
        await app.stop()
