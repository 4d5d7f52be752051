"""AriClient against the fake ARI server: requests on the wire, errors mapped."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from fake_ari import APP, PASSWORD, USERNAME, FakeAri, Recorded

from callcontrol.ari import AriClient, Bridge, Channel, Playback
from callcontrol.ari import client as client_module
from callcontrol.errors import AriError, AriHttpError, AriNotFound, AriUnavailable

CHANNEL = "1715000000.1"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    server = FakeAri()
    await server.start()
    server.add_channel(CHANNEL)
    yield server
    await server.close()


@pytest.fixture
async def client(fake: FakeAri) -> AsyncIterator[AriClient]:
    ari = AriClient(fake.url, USERNAME, PASSWORD, app=APP, timeout=2.0)
    yield ari
    await ari.close()


def last(fake: FakeAri) -> Recorded:
    return fake.requests[-1]


async def test_channel_verbs_send_method_and_path(fake: FakeAri, client: AriClient) -> None:
    await client.answer(CHANNEL)
    assert last(fake) == Recorded("POST", f"/ari/channels/{CHANNEL}/answer", {}, None)
    await client.ring(CHANNEL)
    assert last(fake) == Recorded("POST", f"/ari/channels/{CHANNEL}/ring", {}, None)
    await client.continue_in_dialplan(CHANNEL, context="from-users", extension="100", priority=1)
    assert last(fake) == Recorded(
        "POST",
        f"/ari/channels/{CHANNEL}/continue",
        {"context": "from-users", "extension": "100", "priority": "1"},
        None,
    )
    await client.hangup(CHANNEL, reason="busy")
    assert last(fake) == Recorded("DELETE", f"/ari/channels/{CHANNEL}", {"reason": "busy"}, None)
    assert CHANNEL not in fake.channels


async def test_play_sends_several_media_as_one_parameter(fake: FakeAri, client: AriClient) -> None:
    playback = await client.play(
        CHANNEL, ["sound:welcome", "sound:press-1"], playback_id="pb-7", lang="en"
    )
    assert last(fake).query == {
        "media": "sound:welcome,sound:press-1",
        "playbackId": "pb-7",
        "lang": "en",
    }
    assert playback == Playback(
        id="pb-7", media_uri="sound:welcome", target_uri=f"channel:{CHANNEL}", state="queued"
    )
    assert playback.channel_id == CHANNEL
    await client.play(CHANNEL, "sound:beep")
    assert last(fake).query == {"media": "sound:beep"}
    await client.stop_playback("pb-7")
    assert last(fake) == Recorded("DELETE", "/ari/playbacks/pb-7", {}, None)


async def test_originate_puts_variables_in_the_body(fake: FakeAri, client: AriClient) -> None:
    channel = await client.originate(
        "PJSIP/alice",
        app_args="dialed,call-42",
        caller_id='"Shop" <+4930999000>',
        timeout=25,
        channel_id="call-42-b",
        variables={"CALLCONTROL_CALL_ID": "call-42"},
        originator=CHANNEL,
    )
    assert last(fake) == Recorded(
        "POST",
        "/ari/channels",
        {
            "endpoint": "PJSIP/alice",
            "app": APP,
            "appArgs": "dialed,call-42",
            "callerId": '"Shop" <+4930999000>',
            "timeout": "25",
            "channelId": "call-42-b",
            "originator": CHANNEL,
        },
        {"variables": {"CALLCONTROL_CALL_ID": "call-42"}},
    )
    assert isinstance(channel, Channel)
    assert channel.id == "call-42-b"
    assert channel.state == "Down"


async def test_variables_and_channel_lookups(fake: FakeAri, client: AriClient) -> None:
    await client.set_variable(CHANNEL, "TIMEOUT(absolute)", "3")
    assert last(fake).query == {"variable": "TIMEOUT(absolute)", "value": "3"}
    assert fake.variables[(CHANNEL, "TIMEOUT(absolute)")] == "3"
    channel = await client.get_channel(CHANNEL)
    assert channel.caller.number == "+4930123456"
    assert channel.dialplan is not None and channel.dialplan.context == "from-carrier"
    assert [c.id for c in await client.list_channels()] == [CHANNEL]


async def test_boolean_params_go_as_true_false(fake: FakeAri, client: AriClient) -> None:
    params: dict[str, str | bool | None] = {"variable": "A", "value": "b", "report_events": True}
    params |= {"x": False, "skip": None}
    await client.request("POST", f"/channels/{CHANNEL}/variable", params=params)
    assert last(fake).query == {
        "variable": "A",
        "value": "b",
        "report_events": "true",
        "x": "false",
    }


async def test_bridges(fake: FakeAri, client: AriClient) -> None:
    bridge = await client.create_bridge("br-1", name="call-42")
    assert last(fake) == Recorded(
        "POST", "/ari/bridges", {"type": "mixing", "bridgeId": "br-1", "name": "call-42"}, None
    )
    assert bridge == Bridge(
        id="br-1",
        technology="simple_bridge",
        bridge_type="mixing",
        bridge_class="stasis",
        creator="Stasis",
        creationtime="2026-05-09T10:00:00.000+0000",
    )
    await client.add_channels("br-1", [CHANNEL, "b-1"])
    assert last(fake).query == {"channel": f"{CHANNEL},b-1"}
    assert list(fake.bridges) == ["br-1"]
    await client.destroy_bridge("br-1")
    assert last(fake).method == "DELETE"
    assert fake.bridges == {}


async def test_asterisk_info_and_dynamic_config(fake: FakeAri, client: AriClient) -> None:
    info = await client.info()
    assert info["system"]["version"] == "22.10.1"
    fields = {"type": "auth", "auth_type": "userpass", "username": "alice", "password": "pw"}
    tuples = await client.put_dynamic_config("res_pjsip", "auth", "alice", fields)
    assert last(fake) == Recorded(
        "PUT",
        "/ari/asterisk/config/dynamic/res_pjsip/auth/alice",
        {},
        {"fields": [{"attribute": k, "value": v} for k, v in fields.items()]},
    )
    assert {"attribute": "username", "value": "alice"} in tuples
    assert fake.dynamic[("res_pjsip", "auth", "alice")] == fields
    await client.delete_dynamic_config("res_pjsip", "auth", "alice")
    assert ("res_pjsip", "auth", "alice") not in fake.dynamic
    await client.delete_dynamic_config("res_pjsip", "auth", "alice")  # already gone: fine


async def test_event_filter_disallows_types_for_the_application(
    fake: FakeAri, client: AriClient
) -> None:
    await client.filter_events(["ChannelVarset"])
    request = last(fake)
    assert (request.method, request.path) == ("PUT", f"/ari/applications/{APP}/eventFilter")
    assert request.json == {"disallowed": [{"type": "ChannelVarset"}]}
    assert fake.event_filter == request.json


async def test_404_is_ari_not_found(client: AriClient) -> None:
    with pytest.raises(AriNotFound) as info:
        await client.answer("gone")
    assert info.value.status == 404
    assert info.value.method == "POST"
    assert info.value.path == "/channels/gone/answer"
    assert "Channel not found" in info.value.body


async def test_500_is_ari_http_error(fake: FakeAri, client: AriClient) -> None:
    fake.fail_next(500, "Allocation failed")
    with pytest.raises(AriHttpError) as info:
        await client.get_channel(CHANNEL)
    assert type(info.value) is AriHttpError
    assert info.value.status == 500
    assert "Allocation failed" in info.value.body


async def test_bad_credentials_are_401_and_the_password_never_shows(fake: FakeAri) -> None:
    async with AriClient(fake.url, USERNAME, "wrong-pw", app=APP) as ari:
        with pytest.raises(AriHttpError) as info:
            await ari.info()
        assert info.value.status == 401
        assert "wrong-pw" not in str(info.value)
        assert "wrong-pw" not in repr(ari)


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AriClient(f"http://127.0.0.1:{port}", USERNAME, PASSWORD, app=APP) as ari:
        with pytest.raises(AriUnavailable) as info:
            await ari.answer(CHANNEL)
        assert isinstance(info.value.__cause__, OSError)


async def test_a_kept_alive_connection_closed_by_the_server_is_tried_again() -> None:
    """The first connection is closed without an answer (Asterisk dropping an idle
    keep-alive connection as it is reused): the request goes again on a new one."""
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        if len(requests) > 1:
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with AriClient(f"http://127.0.0.1:{port}", USERNAME, PASSWORD, app=APP) as ari:
            await ari.answer(CHANNEL)
    finally:
        server.close()
    assert len(requests) == 2
    assert all(r.startswith(f"POST /ari/channels/{CHANNEL}/answer".encode()) for r in requests)


async def test_slow_server_times_out_quickly(fake: FakeAri) -> None:
    fake.delay = 30.0
    async with AriClient(fake.url, USERNAME, PASSWORD, app=APP, timeout=0.2) as ari:
        started = time.monotonic()
        with pytest.raises(AriUnavailable, match=r"no answer within 0\.2 s"):
            await ari.answer(CHANNEL)
        assert time.monotonic() - started < 2.0


async def test_closed_client_refuses_requests(client: AriClient) -> None:
    await client.close()
    with pytest.raises(AriUnavailable):
        await client.info()
    assert issubclass(AriUnavailable, AriError)


async def test_base_url_with_ari_suffix_is_accepted(fake: FakeAri) -> None:
    async with AriClient(fake.url + "/ari/", USERNAME, PASSWORD, app=APP) as ari:
        await ari.answer(CHANNEL)
    assert last(fake).path == f"/ari/channels/{CHANNEL}/answer"


async def test_lateness_shows_a_stalled_asterisk_before_it_answers(
    fake: FakeAri, client: AriClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overload control reads ``lateness``: the age of the oldest request still
    unanswered counts at once, not only when (if ever) Asterisk answers it."""
    clock = [1000.0]
    monkeypatch.setattr(client_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    second = "1715000000.2"
    fake.add_channel(second)
    stalled = fake.gate("POST", f"/ari/channels/{CHANNEL}/answer")
    slow = fake.gate("POST", f"/ari/channels/{second}/answer")
    assert client.lateness() == 0.0
    first_request = asyncio.create_task(client.answer(CHANNEL))
    await fake.wait_until(lambda: len(fake.requests) == 1)
    clock[0] += 1.0
    second_request = asyncio.create_task(client.answer(second))
    await fake.wait_until(lambda: len(fake.requests) == 2)
    clock[0] += 2.0
    assert client.lateness() == pytest.approx(3.0)  # the oldest: 3 s and counting
    assert client.latency == 0.0  # nothing answered yet: the smoothed time knows nothing
    stalled.set()
    await first_request
    assert client.latency == pytest.approx(0.3)  # 3 s, weighted 0.1
    assert client.lateness() == pytest.approx(2.0)  # now the second one is the oldest
    slow.set()
    await second_request
    assert client.lateness() == pytest.approx(client.latency)  # none left unanswered
    assert client.latency == pytest.approx(0.47)  # 0.3 + (2 - 0.3) * 0.1
