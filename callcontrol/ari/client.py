"""The ARI REST client: a thin layer on the project's HTTP/1.1 client (http.py).

Every request carries a Basic ``Authorization`` header and a total timeout (waiting
for a free connection, connecting and a second try included). Library errors become
the project's errors (``raise ... from exc``):

    cannot connect, DNS, reset, timed out   -> AriUnavailable
    HTTP 404                                -> AriNotFound
    any other HTTP status >= 400            -> AriHttpError(method, path, status, body)
    a 2xx answer that is not JSON           -> AriError
    an answer that is not HTTP              -> AriError

Paths are relative to ``<base_url>/ari``; ids are percent-encoded as path
segments. Query parameters are strings on the wire, percent-encoded: booleans go as
``"true"``/``"false"`` and ``None`` values are left out. The password is never
logged nor shown in ``repr``.
"""

from __future__ import annotations

import asyncio
import base64
import json as jsonlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from callcontrol.errors import AriError, AriHttpError, AriNotFound, AriUnavailable

from .http import HttpClient, HttpProtocolError
from .models import Bridge, Channel, Playback

logger = logging.getLogger(__name__)

ParamValue = str | int | float | bool | None
LATENCY_WEIGHT = 0.1  # of each request's time in the smoothed ``AriClient.latency``
# Connections the client keeps open to Asterisk's HTTP server at most; further requests
# wait for one (their wait counts in ``latency``, so overload control sees it). Asterisk
# closes any session beyond http.conf's ``sessionlimit`` at once ("Server
# disconnected": at 90 calls/s a 100-connection pool plus the events WebSocket hit the
# default limit of 100); dialplan/http.conf raises that to 1000, and this stays well
# below it so that other app processes, the WebSocket and tools always get a session.
MAX_CONNECTIONS = 64
# Query characters sent as they are (what aiohttp's yarl leaves unencoded too); any other
# is percent-encoded: '&', '=', '+' (Asterisk decodes '+' as a space), '%', space, ...
_QUERY_SAFE = "/:@!$'()*,?"
_query_plain = re.compile(r"[\w.~/:@!$'()*,?-]*", re.ASCII).fullmatch


def ari_root(base_url: str) -> str:
    """``http://host:8088`` (or ``.../ari``, with or without a slash) -> ``http://host:8088/ari``."""
    root = base_url.rstrip("/")
    return root if root.endswith("/ari") else root + "/ari"


def basic_auth_header(username: str, password: str) -> str:
    """The ``Authorization`` header value (aiohttp 3.14 deprecates ``BasicAuth``)."""
    if ":" in username:
        raise ValueError("an ARI user name cannot contain ':'")
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _seg(value: str) -> str:
    return quote(value, safe="")


def _encoded(text: str) -> str:
    return text if _query_plain(text) else quote(text, safe=_QUERY_SAFE)


def _query(params: Mapping[str, ParamValue] | None) -> str:
    """``?name=value&...`` percent-encoded, or ''."""
    query: list[str] = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        query.append(f"{_encoded(key)}={_encoded(text)}")
    return "?" + "&".join(query) if query else ""


def _object(data: Any, method: str, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise AriError(f"ARI {method} {path}: expected a JSON object, got {type(data).__name__}")
    return data


def _list(data: Any, method: str, path: str) -> list[dict[str, Any]]:
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise AriError(f"ARI {method} {path}: expected a JSON list of objects")
    return data


class AriClient:
    """REST calls to one Asterisk for one Stasis application."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        app: str,
        timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url
        self.app = app
        self.timeout = timeout
        self._root = ari_root(base_url)
        self.username = username
        self._headers = {"Authorization": basic_auth_header(username, password)}
        self._path = urlsplit(self._root).path  # "/ari", after any prefix of base_url
        self._http: HttpClient | None = None
        self._closed = False
        self.latency = 0.0  # seconds: requests' answer time, smoothed (overload control)
        self._in_flight: dict[int, float] = {}  # each unanswered request's start, oldest first
        self._sent = 0
        # Told (method, path, seconds) of every answered or timed-out request: the metrics.
        self.observer: Callable[[str, str, float], None] | None = None

    def lateness(self) -> float:
        """How far behind Asterisk is, for overload control (seconds): the smoothed answer
        time, or the age of the oldest request still unanswered if that is more. A
        stalled Asterisk answers nothing, so answer times alone show the stall only
        once it ends: calls admitted meanwhile met ARI time-outs after their answer."""
        oldest = next(iter(self._in_flight.values()), None)
        waited = 0.0 if oldest is None else time.monotonic() - oldest
        return max(self.latency, waited)

    def __repr__(self) -> str:
        return f"AriClient({self._root!r}, user={self.username!r}, app={self.app!r})"

    async def start(self) -> None:
        """Create the HTTP client now (otherwise done by the first request)."""
        self._get_http()

    async def close(self) -> None:
        """Close the connections; later requests raise AriUnavailable."""
        self._closed = True
        http, self._http = self._http, None
        if http is not None:
            http.close()

    async def __aenter__(self) -> AriClient:
        await self.start()
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        await self.close()

    def _get_http(self) -> HttpClient:
        if self._closed:
            raise AriUnavailable("the ARI client is closed")
        if self._http is None:
            self._http = HttpClient(self._root, self._headers, limit=MAX_CONNECTIONS)
        return self._http

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, ParamValue] | None = None,
        json: Any = None,
    ) -> Any:
        """One ARI call; returns the parsed JSON, or None for 204 / an empty body."""
        http = self._get_http()
        target = self._path + path + _query(params)
        data, content_type = b"", ""
        if json is not None:
            data, content_type = jsonlib.dumps(json).encode(), "application/json"
        started = time.monotonic()
        self._sent = key = self._sent + 1
        self._in_flight[key] = started
        try:
            async with asyncio.timeout(self.timeout):
                status, body = await http.request(method, target, data, content_type)
        except TimeoutError as exc:
            self.latency += (self.timeout - self.latency) * LATENCY_WEIGHT
            if self.observer is not None:
                self.observer(method, path, self.timeout)
            raise AriUnavailable(f"ARI {method} {path}: no answer within {self.timeout} s") from exc
        except OSError as exc:  # cannot connect, DNS, TLS, reset
            raise AriUnavailable(f"ARI {method} {path}: {exc or type(exc).__name__}") from exc
        except HttpProtocolError as exc:
            raise AriError(f"ARI {method} {path}: {exc}") from exc
        finally:
            del self._in_flight[key]
        took = time.monotonic() - started
        self.latency += (took - self.latency) * LATENCY_WEIGHT
        if self.observer is not None:
            self.observer(method, path, took)
        logger.debug("ARI %s %s -> %d (%.1f ms)", method, path, status, took * 1e3)
        if status >= 400:
            text = body.decode("utf-8", errors="replace")
            error = AriNotFound if status == 404 else AriHttpError
            raise error(method, path, status, text)
        if status == 204 or not body.strip():
            return None
        try:
            return jsonlib.loads(body)
        except ValueError as exc:
            raise AriError(f"ARI {method} {path}: answer is not JSON") from exc

    # --- channels -------------------------------------------------------------

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{_seg(channel_id)}/answer")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self.request("DELETE", f"/channels/{_seg(channel_id)}", params={"reason": reason})

    async def ring(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{_seg(channel_id)}/ring")

    async def play(
        self,
        channel_id: str,
        media: Sequence[str],
        *,
        playback_id: str | None = None,
        lang: str | None = None,
    ) -> Playback:
        """Play one or several media URIs (``sound:...``) in one playback."""
        items = [media] if isinstance(media, str) else list(media)
        if not items:
            raise ValueError("play needs at least one media URI")
        path = f"/channels/{_seg(channel_id)}/play"
        params = {"media": ",".join(items), "playbackId": playback_id, "lang": lang}
        data = await self.request("POST", path, params=params)
        return Playback.from_json(_object(data, "POST", path))

    async def stop_playback(self, playback_id: str) -> None:
        await self.request("DELETE", f"/playbacks/{_seg(playback_id)}")

    async def originate(
        self,
        endpoint: str,
        *,
        app_args: str,
        caller_id: str | None = None,
        timeout: int = 30,  # noqa: ASYNC109 (ARI's ring timeout, in seconds)
        channel_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        originator: str | None = None,
    ) -> Channel:
        """Call ``endpoint`` and, once it answers, put it into our Stasis app."""
        params: dict[str, ParamValue] = {
            "endpoint": endpoint,
            "app": self.app,
            "appArgs": app_args,
            "callerId": caller_id,
            "timeout": timeout,
            "channelId": channel_id,
            "originator": originator,
        }
        body = {"variables": dict(variables)} if variables else None
        data = await self.request("POST", "/channels", params=params, json=body)
        return Channel.from_json(_object(data, "POST", "/channels"))

    async def set_variable(self, channel_id: str, variable: str, value: str) -> None:
        params = {"variable": variable, "value": value}
        await self.request("POST", f"/channels/{_seg(channel_id)}/variable", params=params)

    async def get_channel(self, channel_id: str) -> Channel:
        path = f"/channels/{_seg(channel_id)}"
        return Channel.from_json(_object(await self.request("GET", path), "GET", path))

    async def list_channels(self) -> list[Channel]:
        data = _list(await self.request("GET", "/channels"), "GET", "/channels")
        return [Channel.from_json(item) for item in data]

    async def filter_events(self, disallowed: Sequence[str]) -> None:
        """Asterisk stops sending this application the event types ``disallowed``
        (``PUT /applications/{app}/eventFilter``, Asterisk 13.26+); set again after
        every connect (the application is created anew with its WebSocket)."""
        await self.request(
            "PUT",
            f"/applications/{_seg(self.app)}/eventFilter",
            json={"disallowed": [{"type": kind} for kind in disallowed]},
        )

    async def subscribe(self, channel_id: str) -> None:
        """Receive a channel's events in this application (a call found after a restart)."""
        await self.request(
            "POST",
            f"/applications/{_seg(self.app)}/subscription",
            params={"eventSource": f"channel:{channel_id}"},
        )

    async def continue_in_dialplan(
        self,
        channel_id: str,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
    ) -> None:
        params: dict[str, ParamValue] = {
            "context": context,
            "extension": extension,
            "priority": priority,
        }
        await self.request("POST", f"/channels/{_seg(channel_id)}/continue", params=params)

    # --- bridges --------------------------------------------------------------

    async def create_bridge(
        self, bridge_id: str | None = None, *, type: str = "mixing", name: str | None = None
    ) -> Bridge:
        params = {"type": type, "bridgeId": bridge_id, "name": name}
        data = await self.request("POST", "/bridges", params=params)
        return Bridge.from_json(_object(data, "POST", "/bridges"))

    async def add_channels(self, bridge_id: str, channel_ids: Sequence[str]) -> None:
        ids = [channel_ids] if isinstance(channel_ids, str) else list(channel_ids)
        path = f"/bridges/{_seg(bridge_id)}/addChannel"
        await self.request("POST", path, params={"channel": ",".join(ids)})

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{_seg(bridge_id)}")

    async def info(self) -> dict[str, Any]:
        return _object(await self.request("GET", "/asterisk/info"), "GET", "/asterisk/info")

    @staticmethod
    def _config_path(config_class: str, object_type: str, object_id: str) -> str:
        return (
            f"/asterisk/config/dynamic/{_seg(config_class)}/{_seg(object_type)}/{_seg(object_id)}"
        )

    async def put_dynamic_config(
        self,
        config_class: str,
        object_type: str,
        object_id: str,
        fields: Mapping[str, str],
    ) -> list[dict[str, Any]]:
        """Create or update a sorcery object, e.g. ``res_pjsip``/``endpoint``/``alice``."""
        path = self._config_path(config_class, object_type, object_id)
        body = {"fields": [{"attribute": k, "value": v} for k, v in fields.items()]}
        return _list(await self.request("PUT", path, json=body), "PUT", path)

    async def delete_dynamic_config(
        self, config_class: str, object_type: str, object_id: str
    ) -> None:
        """Delete the object; one that is already gone is fine."""
        path = self._config_path(config_class, object_type, object_id)
        try:
            await self.request("DELETE", path)
        except AriNotFound:
            logger.debug("ARI dynamic config %s already gone", path)
