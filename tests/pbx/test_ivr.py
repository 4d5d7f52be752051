"""IVR flows through the real PBX: the carrier presses keys (RFC 4733 from sipp).

Each test runs a flow written for it ("test", below) so that its timers are short
and its prompts known; the number FLOW_NUMBER is routed to it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import FLOW_NUMBER, AppProcess, Carrier, Org, Phones

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


async def connected_to(app: AppProcess, user: str, mark: int = 0) -> str:
    match = await app.wait_log(rf"\[(\w+)\] \S+: connected \S+ with {user}", after=mark, timeout=40)
    return match.group(1)


async def test_a_key_rings_the_right_user_and_interrupts_the_prompt(
    ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    phone = await phones.answering("alice")
    call = await carrier.dtmf_call(FLOW_NUMBER, [Pause(800), Dtmf("1")], end="wait_bye")
    call_id = await connected_to(ivr_app, "alice")
    await ivr_app.wait_log(rf"\[{call_id}\] .*barge-in: 1 stops the prompt")
    phone_result = await phone.wait(40)  # alice talks until the PBX hangs up (she waits)
    call.kill()
    await call.wait(5)
    assert phone_result.received()[0].startswith("INVITE")


async def test_a_submenu_then_a_key(ivr_app: AppProcess, phones: Phones, carrier: Carrier) -> None:
    phone = await phones.answering("bob", talk_ms=1000)
    call = await carrier.dtmf_call(
        FLOW_NUMBER, [Pause(500), Dtmf("2"), Pause(1200), Dtmf("1")], end="wait_bye"
    )
    await connected_to(ivr_app, "bob")
    assert (await phone.wait(30)).ok
    assert (await call.wait(30)).ok
    await ivr_app.wait_log(r"call ended: answered, ended by callee")


async def test_no_key_retries_on_timeout_then_the_fallback(
    ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    phone = await phones.answering("bob", talk_ms=500)
    call = await carrier.dtmf_call(FLOW_NUMBER, [Pause(200)], end="wait_bye", wait_bye_ms=40_000)
    await connected_to(ivr_app, "bob")  # on_failure after the retry timed out too
    assert (await phone.wait(60)).ok
    assert (await call.wait(60)).ok
    steps = [line for line in ivr_app.lines if "ivr.interpreter" in line]
    assert sum("timeout, attempt" in line for line in steps) == 2, steps


async def test_invalid_keys_then_the_fallback(
    ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    phone = await phones.answering("bob", talk_ms=500)
    call = await carrier.dtmf_call(
        FLOW_NUMBER, [Pause(500), Dtmf("7"), Pause(800), Dtmf("7")], end="wait_bye"
    )
    await connected_to(ivr_app, "bob")
    assert (await phone.wait(60)).ok
    assert (await call.wait(60)).ok
    steps = [line for line in ivr_app.lines if "ivr.interpreter" in line]
    assert sum("invalid, attempt" in line for line in steps) == 2, steps


async def test_direct_dial_of_an_extension(
    ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    phone = await phones.answering("bob", talk_ms=500)
    call = await carrier.dtmf_call(
        FLOW_NUMBER, [Pause(500), Dtmf("9"), Pause(700), Dtmf("1002#")], end="wait_bye"
    )
    await connected_to(ivr_app, "bob")
    assert (await phone.wait(30)).ok
    assert (await call.wait(30)).ok


async def test_caller_hangs_up_mid_menu_and_nothing_of_the_call_is_left(
    ivr_app: AppProcess, carrier: Carrier
) -> None:
    call = await carrier.dtmf_call(FLOW_NUMBER, [Pause(1500)], end="hangup")
    assert (await call.wait(30)).ok
    match = await ivr_app.wait_log(
        r"call (\w+) released: (\d+) tasks left, (\d+) live calls, (\d+) channel subscriptions"
    )
    assert match.group(2, 3, 4) == ("0", "0", "0")
    assert not any("left tasks behind" in line for line in ivr_app.lines)


async def test_a_garbage_key_flood_does_not_break_the_call(
    ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    bob = await phones.answering("bob", talk_ms=500)
    flood = "5*5*5*5*5*5*5*5*5*5*5*5*5*5*5*5*5*5*5*5"
    call = await carrier.dtmf_call(
        FLOW_NUMBER,
        [Pause(300), Dtmf(flood, gap_ms=20, duration_ms=60)],
        end="wait_bye",
        wait_bye_ms=40_000,
    )
    # Keys that mean nothing use up the retries; the menu's on_failure rings bob.
    await connected_to(ivr_app, "bob")
    assert (await bob.wait(30)).ok
    assert (await call.wait(30)).ok
    match = await ivr_app.wait_log(r"call \w+ released: (\d+) tasks left")
    assert match.group(1) == "0"
    assert sum("invalid key" in line for line in ivr_app.lines) >= 2


async def test_a_flow_edited_during_a_call(
    ivr: Org, ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    flows = Path(ivr.env["CALLCONTROL_FLOWS_DIR"])
    old_version = (await ivr_app.wait_log(r"flow test \(version (\w+)\) now serves")).group(1)
    first = await carrier.dtmf_call(FLOW_NUMBER, [Pause(4000), Dtmf("1")], end="wait_bye")
    await ivr_app.wait_log(rf"running flow test \(version {old_version}\)")
    mark = ivr_app.mark()
    (flows / "test.yaml").write_text(TEST_FLOW.replace('"1": {ring: alice}', '"1": {ring: bob}'))
    new_version = (
        await ivr_app.wait_log(r"flow test \(version (\w+)\) now serves", after=mark)
    ).group(1)
    assert new_version != old_version
    alice = await phones.answering("alice", talk_ms=500)
    # The call in progress keeps its version: key 1 still rings alice.
    await connected_to(ivr_app, "alice", mark)
    assert (await alice.wait(30)).ok
    assert (await first.wait(30)).ok
    bob = await phones.answering("bob", talk_ms=500)
    mark = ivr_app.mark()
    second = await carrier.dtmf_call(FLOW_NUMBER, [Pause(500), Dtmf("1")], end="wait_bye")
    await ivr_app.wait_log(rf"running flow test \(version {new_version}\)", after=mark)
    await connected_to(ivr_app, "bob", mark)
    assert (await bob.wait(30)).ok
    assert (await second.wait(30)).ok


async def test_an_invalid_edit_is_refused_and_calls_go_on(
    ivr: Org, ivr_app: AppProcess, phones: Phones, carrier: Carrier
) -> None:
    flows = Path(ivr.env["CALLCONTROL_FLOWS_DIR"])
    version = (await ivr_app.wait_log(r"flow test \(version (\w+)\) now serves")).group(1)
    mark = ivr_app.mark()
    (flows / "test.yaml").write_text(TEST_FLOW.replace("retries: 1", "retries: 1\n    colour: red"))
    error = await ivr_app.wait_log(r"test\.yaml:(\d+):(\d+): .*colour", after=mark)
    assert int(error.group(1)) > 0
    phone = await phones.answering("alice", talk_ms=500)
    call = await carrier.dtmf_call(FLOW_NUMBER, [Pause(500), Dtmf("1")], end="wait_bye")
    await ivr_app.wait_log(rf"running flow test \(version {re.escape(version)}\)", after=mark)
    await connected_to(ivr_app, "alice", mark)
    assert (await phone.wait(30)).ok
    assert (await call.wait(30)).ok


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
        await app.wait_log(r"serving tts-\w+\.wav to 127\.0\.0\.1", timeout=20)
        await app.wait_log(r"serving welcome\.wav to 127\.0\.0\.1", timeout=20)
        await connected_to(app, "alice")
        assert (await phone.wait(30)).ok
        assert (await call.wait(30)).ok
        played = [line for line in app.lines if "ivr.interpreter" in line and " play " in line]
        assert played and "barge-in" not in played[0], played  # played to the end
        assert not any("failed to play" in line for line in app.lines)
    finally:
        await app.stop()
