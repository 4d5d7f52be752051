"""A small fake Asterisk ARI server for the adapter's unit tests.

It speaks the subset of the real protocol the adapter uses, on 127.0.0.1 with
a free port: Basic auth (401 otherwise), REST endpoints answering with JSON in
the shapes of Asterisk 22's ``rest-api/*.json`` (204 where Asterisk answers
"void", 404 ``{"message": "Channel not found"}``), and the ``/ari/events``
WebSocket. Tests can make it fail in the ways a real Asterisk cannot be made
to on demand: drop the WebSockets, accept and close at once, stop listening
(connection refused), send ``ApplicationReplaced``, delay or fail answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

USERNAME = "asterisk"
PASSWORD = "s3cret-pw-fake-ari"
APP = "callcontrol"
TIMESTAMP = "2026-05-09T10:00:00.000+0000"


def channel_json(
    channel_id: str,
    *,
    name: str | None = None,
    state: str = "Ring",
    caller_number: str = "+4930123456",
    exten: str = "+4930999000",
    channelvars: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Channel as Asterisk 22 sends it."""
    data: dict[str, Any] = {
        "id": channel_id,
        "name": name or f"PJSIP/carrier-{channel_id.rpartition('.')[2]:0>8}",
        "state": state,
        "protocol_id": f"{channel_id}@127.0.0.1",
        "caller": {"name": "", "number": caller_number},
        "connected": {"name": "", "number": ""},
        "accountcode": "",
        "dialplan": {
            "context": "from-carrier",
            "exten": exten,
            "priority": 2,
            "app_name": "Stasis",
            "app_data": f"{APP},inbound,{exten}",
        },
        "creationtime": TIMESTAMP,
        "language": "en",
    }
    if channelvars is not None:
        data["channelvars"] = channelvars
    return data


def bridge_json(bridge_id: str, channels: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": bridge_id,
        "technology": "simple_bridge",
        "bridge_type": "mixing",
        "bridge_class": "stasis",
        "creator": "Stasis",
        "name": "",
        "channels": channels or [],
        "creationtime": TIMESTAMP,
        "video_mode": "none",
    }


def playback_json(playback_id: str, channel_id: str, media: str, state: str) -> dict[str, Any]:
    return {
        "id": playback_id,
        "media_uri": media.partition(",")[0],
        "next_media_uri": media.partition(",")[2].partition(",")[0] or None,
        "target_uri": f"channel:{channel_id}",
        "language": "en",
        "state": state,
    }


def event_json(event_type: str, **fields: Any) -> dict[str, Any]:
    """An ARI event message with the common fields."""
    return {
        "type": event_type,
        "timestamp": TIMESTAMP,
        "application": APP,
        "asterisk_id": "02:42:ac:11:00:02",
        **fields,
    }


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    json: Any


class FakeAri:
    """The fake server; ``await start()``, use ``url``, ``await close()``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.channels: dict[str, dict[str, Any]] = {}
        self.variables: dict[tuple[str, str], str] = {}
        # The variables ari.conf's ``channelvars`` names: every channel's JSON reports them.
        self.channelvars: tuple[str, ...] = ()
        self.subscriptions: set[str] = set()  # event sources added to the application
        self.event_filter: Any = None  # the body of the last PUT .../eventFilter
        self.gates: dict[tuple[str, str], asyncio.Event] = {}
        self.bridges: dict[str, dict[str, Any]] = {}
        self.dynamic: dict[tuple[str, str, str], dict[str, str]] = {}
        self.registered: set[str] = set()  # PJSIP endpoints whose phone is registered
        self.delay = 0.0
        self.close_ws_immediately = False
        self.ws_handshakes = 0  # every /ari/events request, authorized or not
        self.ws_accepted = 0
        self.ws_queries: list[dict[str, str]] = []
        self.port = 0
        self._failures: list[tuple[int, str]] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self._changed = asyncio.Condition()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_sockets(self) -> int:
        return len(self._sockets)

    # --- control ---------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        app = web.Application(middlewares=[self._auth_middleware])
        self._routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port or self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening (clients get connection refused) and drop the WebSockets."""
        self._release.set()
        await self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._release = asyncio.Event()

    async def close(self) -> None:
        await self.stop()

    def gate(self, method: str, path: str) -> asyncio.Event:
        """Requests ``method path`` are recorded, then answered once the event is set."""
        return self.gates.setdefault((method, path), asyncio.Event())

    def fail_next(self, status: int, message: str = "Internal Server Error") -> None:
        """The next REST request answers ``status`` with ``{"message": message}``."""
        self._failures.append((status, message))

    async def send_event(self, data: dict[str, Any]) -> None:
        for ws in list(self._sockets):
            await ws.send_json(data)

    async def drop_websockets(self) -> None:
        for ws in list(self._sockets):
            await ws.close()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- HTTP ------------------------------------------------------------------

    @web.middleware
    async def _auth_middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        expected = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        if request.path == "/ari/events":
            self.ws_handshakes += 1
            await self._notify()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response(
                {"message": "Authentication required"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="Asterisk REST Interface"'},
            )
        if request.path != "/ari/events":
            body = await request.json() if request.can_read_body else None
            self.requests.append(Recorded(request.method, request.path, dict(request.query), body))
            await self._notify()
            gate = self.gates.get((request.method, request.path))
            if gate is not None:
                await gate.wait()
            if self.delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._release.wait(), self.delay)
            if self._failures:
                status, message = self._failures.pop(0)
                return web.json_response({"message": message}, status=status)
        return await handler(request)

    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/ari/events", self._events)
        r.add_get("/ari/asterisk/info", self._info)
        r.add_get("/ari/channels", self._list_channels)
        r.add_post("/ari/channels", self._originate)
        r.add_post("/ari/channels/create", self._create)
        r.add_get("/ari/channels/{id}", self._get_channel)
        r.add_delete("/ari/channels/{id}", self._hangup)
        r.add_post("/ari/channels/{id}/answer", self._channel_void)
        r.add_post("/ari/channels/{id}/ring", self._channel_void)
        r.add_delete("/ari/channels/{id}/ring", self._channel_void)
        r.add_post("/ari/channels/{id}/dial", self._channel_void)
        r.add_post("/ari/channels/{id}/continue", self._channel_void)
        r.add_post("/ari/channels/{id}/progress", self._channel_void)
        r.add_post("/ari/channels/{id}/play", self._play)
        r.add_get("/ari/channels/{id}/variable", self._get_variable)
        r.add_post("/ari/channels/{id}/variable", self._set_variable)
        r.add_delete("/ari/playbacks/{id}", self._void)
        r.add_get("/ari/bridges", self._list_bridges)
        r.add_post("/ari/bridges", self._create_bridge)
        r.add_delete("/ari/bridges/{id}", self._destroy_bridge)
        r.add_post("/ari/bridges/{id}/addChannel", self._bridge_void)
        r.add_post("/ari/bridges/{id}/removeChannel", self._bridge_void)
        r.add_post("/ari/applications/{app}/subscription", self._subscribe)
        r.add_put("/ari/applications/{app}/eventFilter", self._event_filter)
        r.add_get("/ari/endpoints/PJSIP", self._list_endpoints)
        dynamic = "/ari/asterisk/config/dynamic/{cls}/{type}/{id}"
        r.add_get(dynamic, self._get_config)
        r.add_put(dynamic, self._put_config)
        r.add_delete(dynamic, self._delete_config)

    async def _list_endpoints(self, request: web.Request) -> web.Response:
        """The endpoints pushed as dynamic configuration; online when ``registered``."""
        names = sorted(i for (_c, kind, i) in self.dynamic if kind == "endpoint")
        return web.json_response(
            [
                {
                    "technology": "PJSIP",
                    "resource": name,
                    "state": "online" if name in self.registered else "offline",
                    "channel_ids": [],
                }
                for name in names
            ]
        )

    def add_channel(self, channel_id: str, **kwargs: Any) -> dict[str, Any]:
        self.channels[channel_id] = channel_json(channel_id, **kwargs)
        return self.channels[channel_id]

    @staticmethod
    def _not_found(what: str) -> web.Response:
        return web.json_response({"message": f"{what} not found"}, status=404)

    async def _void(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _channel_void(self, request: web.Request) -> web.Response:
        if request.match_info["id"] not in self.channels:
            return self._not_found("Channel")
        return web.Response(status=204)

    async def _bridge_void(self, request: web.Request) -> web.Response:
        if request.match_info["id"] not in self.bridges:
            return self._not_found("Bridge")
        return web.Response(status=204)

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "build": {"os": "Linux", "kernel": "6.1.0", "machine": "x86_64"},
                "system": {"version": "22.10.1", "entity_id": "02:42:ac:11:00:02"},
                "config": {"name": "", "default_language": "en"},
                "status": {"startup_time": TIMESTAMP, "last_reload_time": TIMESTAMP},
            }
        )

    def channel(self, channel_id: str) -> dict[str, Any]:
        """The channel's JSON as Asterisk reports it: with its ``channelvars``."""
        data = dict(self.channels[channel_id])
        if self.channelvars:
            data["channelvars"] = {
                name: self.variables.get((channel_id, name), "") for name in self.channelvars
            }
        return data

    async def _list_channels(self, request: web.Request) -> web.Response:
        return web.json_response([self.channel(cid) for cid in self.channels])

    async def _get_channel(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["id"]
        if channel_id not in self.channels:
            return self._not_found("Channel")
        return web.json_response(self.channel(channel_id))

    async def _hangup(self, request: web.Request) -> web.Response:
        if self.channels.pop(request.match_info["id"], None) is None:
            return self._not_found("Channel")
        return web.Response(status=204)

    async def _originate(self, request: web.Request) -> web.Response:
        channel_id = request.query.get("channelId") or f"1715000000.{next(self._ids)}"
        self.add_channel(channel_id, state="Down", name="PJSIP/alice-00000002")
        body = await request.json() if request.body_exists else None
        for name, value in ((body or {}).get("variables") or {}).items():
            self.variables[(channel_id, name)] = value
        return web.json_response(self.channel(channel_id))

    async def _create(self, request: web.Request) -> web.Response:
        return await self._originate(request)

    async def _play(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["id"]
        if channel_id not in self.channels:
            return self._not_found("Channel")
        playback_id = request.query.get("playbackId") or f"pb-{next(self._ids)}"
        media = request.query["media"]
        return web.json_response(
            playback_json(playback_id, channel_id, media, "queued"), status=201
        )

    async def _get_variable(self, request: web.Request) -> web.Response:
        key = (request.match_info["id"], request.query["variable"])
        if key not in self.variables:
            return self._not_found("Provided variable was")
        return web.json_response({"value": self.variables[key]})

    async def _set_variable(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["id"]
        if channel_id not in self.channels:
            return self._not_found("Channel")
        self.variables[(channel_id, request.query["variable"])] = request.query.get("value", "")
        return web.Response(status=204)

    async def _list_bridges(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.bridges.values()))

    async def _create_bridge(self, request: web.Request) -> web.Response:
        bridge_id = request.query.get("bridgeId") or f"bridge-{next(self._ids)}"
        self.bridges[bridge_id] = bridge_json(bridge_id)
        return web.json_response(self.bridges[bridge_id])

    async def _destroy_bridge(self, request: web.Request) -> web.Response:
        if self.bridges.pop(request.match_info["id"], None) is None:
            return self._not_found("Bridge")
        return web.Response(status=204)

    async def _event_filter(self, request: web.Request) -> web.Response:
        """PUT /applications/{app}/eventFilter (rest-api/applications.json): kept in
        ``event_filter``; the fake sends only what a test sends, so it filters nothing."""
        if request.match_info["app"] != APP:
            return self._not_found("Application")
        self.event_filter = await request.json()
        return web.json_response({"name": APP, "events_disallowed": self.event_filter})

    async def _subscribe(self, request: web.Request) -> web.Response:
        """POST /applications/{app}/subscription (rest-api/applications.json)."""
        if request.match_info["app"] != APP:
            return self._not_found("Application")
        sources = request.query.get("eventSource")
        if not sources:
            return web.json_response({"message": "Missing parameter eventSource"}, status=400)
        for source in sources.split(","):
            kind, _, object_id = source.partition(":")
            if kind != "channel" or object_id not in self.channels:
                return web.json_response({"message": "Event source does not exist"}, status=422)
            self.subscriptions.add(source)
        return web.json_response(
            {
                "name": APP,
                "channel_ids": sorted(s.partition(":")[2] for s in self.subscriptions),
                "bridge_ids": [],
                "endpoint_ids": [],
                "device_names": [],
                "events_allowed": [],
                "events_disallowed": [],
            }
        )

    def _config_key(self, request: web.Request) -> tuple[str, str, str]:
        m = request.match_info
        return (m["cls"], m["type"], m["id"])

    async def _get_config(self, request: web.Request) -> web.Response:
        fields = self.dynamic.get(self._config_key(request))
        if fields is None:
            return self._not_found("Object")
        return web.json_response([{"attribute": k, "value": v} for k, v in fields.items()])

    async def _put_config(self, request: web.Request) -> web.Response:
        body = await request.json()
        fields = {f["attribute"]: f["value"] for f in body["fields"]}
        self.dynamic.setdefault(self._config_key(request), {}).update(fields)
        return await self._get_config(request)

    async def _delete_config(self, request: web.Request) -> web.Response:
        if self.dynamic.pop(self._config_key(request), None) is None:
            return self._not_found("Object")
        return web.Response(status=204)

    # --- WebSocket -------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        self.ws_queries.append(dict(request.query))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws_accepted += 1
        if self.close_ws_immediately:
            await ws.close()
            await self._notify()
            return ws
        self._sockets.add(ws)
        await self._notify()
        try:
            async for _ in ws:
                pass
        finally:
            self._sockets.discard(ws)
            await self._notify()
        return ws

    async def send_application_replaced(self) -> None:
        await self.send_event(event_json("ApplicationReplaced"))
