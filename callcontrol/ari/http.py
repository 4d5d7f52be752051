"""A lean HTTP/1.1 client with kept-alive connections, for ARI's REST requests.

aiohttp's client costs about 0.25 ms of CPU per request (request and response objects,
URLs, header multidicts, the connector); a routed call makes 11 requests. This one
writes the request head as one string, parses the answer straight from the bytes the
transport hands in (asyncio's Protocol API: no stream objects, one future per wait) and
costs a few tens of microseconds. The events WebSocket stays on aiohttp (stream.py).

A pool of connections to the one host:port of the base URL, at most ``limit`` open;
a request that finds none idle and the pool full waits for one in turn. A connection
goes back to the pool only after a complete answer that lets it stay open, and is not
reused once idle for ``IDLE_LIFETIME`` (Asterisk's http.conf closes idle sessions after
``session_keep_alive``, 15 s by default). If the server closes a connection before any
byte of the answer arrives (an idle connection closed as it was reused, or a session
over Asterisk's ``sessionlimit`` closed at once), the request goes once more on a new
connection. Any other failure closes the connection.

Errors: OSError (ConnectionError and its kinds, DNS, TLS) when the server cannot be
reached or the connection breaks; HttpProtocolError for an answer that is not HTTP;
timeouts are the caller's (``asyncio.timeout`` around ``request``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import cast
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

IDLE_LIFETIME = 10.0  # seconds; below Asterisk's default session_keep_alive of 15 s
MAX_HEAD = 65536  # bytes of status line and headers


class HttpProtocolError(Exception):
    """The server's answer is not well-formed HTTP/1.1."""


class ServerDisconnected(ConnectionResetError):
    """The server closed the connection before sending any byte of the answer."""


class HttpClient:
    """Requests to one ``http(s)://host:port`` over at most ``limit`` connections."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, limit: int) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if url.scheme == "https" else None
        fixed = {"Host": url.netloc, **headers}
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._limit = limit
        self._open = 0  # connections open or being opened, idle ones included
        self._idle: list[_Connection] = []  # the last one is the most recently used
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._connections: set[_Connection] = set()  # every open one, to close them all
        self._closed = False

    async def request(
        self, method: str, target: str, body: bytes = b"", content_type: str = ""
    ) -> tuple[int, bytes]:
        """Send ``method target`` (``target``: the encoded path and query); answer
        (status, body)."""
        head = f"{method} {target} HTTP/1.1\r\n{self._fixed}"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body)}\r\n"
        data = (head + "\r\n").encode() + body
        conn = await self._acquire()
        try:
            try:
                status, answer, keep = await conn.exchange(data)
            except ServerDisconnected:
                conn.close()
                logger.debug(
                    "%s %s: closed before an answer; sending again on a new connection",
                    method,
                    target.partition("?")[0],
                )
                conn = await self._connect()
                status, answer, keep = await conn.exchange(data)
        except BaseException:
            conn.close()
            self._release(None)
            raise
        if keep and not self._closed:
            conn.idle_since = time.monotonic()
            self._release(conn)
        else:
            conn.close()
            self._release(None)
        return status, answer

    def close(self) -> None:
        """Close every connection; requests on them fail, later ones raise."""
        self._closed = True
        self._idle.clear()
        for conn in list(self._connections):
            conn.close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionAbortedError("the HTTP client is closed"))

    async def _acquire(self) -> _Connection:
        """An idle connection, or a new one in a free slot (waiting for either)."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable(now):
                return conn
            conn.close()
            self._open -= 1
        if self._open < self._limit:
            self._open += 1
        else:
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._release(waiter.result())  # handed over as we were cancelled
                raise
            if handed is not None:
                return handed
        try:
            return await self._connect()
        except BaseException:
            self._release(None)
            raise

    async def _connect(self) -> _Connection:
        if self._closed:
            raise ConnectionAbortedError("the HTTP client is closed")
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: _Connection(loop, self._connections.discard),
            self._host,
            self._port,
            ssl=self._ssl,
        )
        self._connections.add(conn)
        return conn

    def _release(self, conn: _Connection | None) -> None:
        """Give a kept-alive connection, or its slot (None), to the next waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            self._open -= 1
        else:
            self._idle.append(conn)


class _Connection(asyncio.Protocol):
    """One connection: writes a request, reads its answer from the bytes received."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, forget: Callable[[_Connection], None]
    ) -> None:
        self._loop = loop
        self._forget = forget
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False  # the connection is closed (by either side)
        self._error: Exception | None = None  # why, if it broke
        self._silent = True  # no byte of the current answer yet
        self.idle_since = 0.0

    # --- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses)
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._silent = False
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._error = exc
        self._forget(self)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- use -------------------------------------------------------------------

    def reusable(self, now: float) -> bool:
        transport = self._transport
        return (
            not self._ended
            and transport is not None
            and not transport.is_closing()
            and not self._buffer  # nothing the server sent unasked
            and now - self.idle_since < IDLE_LIFETIME
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Write the request; answer (status, body, whether the connection may be reused)."""
        assert self._transport is not None
        self._silent = True
        self._transport.write(request)
        buffer = self._buffer
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            if len(buffer) > MAX_HEAD:
                raise HttpProtocolError("the answer's head is too long")
            await self._more()
        status, length, chunked, keep = _parse_head(bytes(buffer[:end]))
        del buffer[: end + 4]
        if status in (204, 304):
            body = b""
        elif chunked:
            body = await self._read_chunked()
        elif length is not None:
            body = await self._read(length)
        else:  # the body ends with the connection
            while not self._ended:
                await self._wait()
            body, keep = bytes(buffer), False
            buffer.clear()
        return status, body, keep and not self._ended

    async def _read(self, size: int) -> bytes:
        buffer = self._buffer
        while len(buffer) < size:
            await self._more()
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    async def _read_line(self) -> bytes:
        buffer = self._buffer
        while (end := buffer.find(b"\r\n")) < 0:
            if len(buffer) > MAX_HEAD:
                raise HttpProtocolError("a chunk line is too long")
            await self._more()
        line = bytes(buffer[:end])
        del buffer[: end + 2]
        return line

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            line = await self._read_line()
            try:
                size = int(line.partition(b";")[0], 16)
            except ValueError:
                raise HttpProtocolError(f"bad chunk size {line[:40]!r}") from None
            if size == 0:
                break
            chunk = await self._read(size + 2)
            if not chunk.endswith(b"\r\n"):
                raise HttpProtocolError("a chunk does not end with CRLF")
            body += chunk[:-2]
        while await self._read_line():  # trailer fields, up to the empty line
            pass
        return bytes(body)

    async def _more(self) -> None:
        """Wait for more bytes; the connection's end before them is an error."""
        if self._ended:
            if self._silent:
                raise ServerDisconnected("the server closed the connection") from self._error
            raise ConnectionResetError("the connection broke mid-answer") from self._error
        await self._wait()

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """Status line and headers -> (status, Content-Length, chunked, keep-alive)."""
    version, _, rest = head.partition(b" ")
    if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
        line = head.partition(b"\r\n")[0]
        raise HttpProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
    status = int(rest[:3])
    if status < 200:
        raise HttpProtocolError(f"unexpected informational answer {status}")
    head = head.lower()
    length: int | None = None
    if (value := _field(head, b"content-length")) is not None:
        if not value.isdigit():
            raise HttpProtocolError(f"bad Content-Length {value[:40]!r}")
        length = int(value)
    chunked = (_field(head, b"transfer-encoding") or b"").endswith(b"chunked")
    tokens = {token.strip() for token in (_field(head, b"connection") or b"").split(b",")}
    keep = b"keep-alive" in tokens if version == b"HTTP/1.0" else b"close" not in tokens
    return status, length, chunked, keep


def _field(head: bytes, name: bytes) -> bytes | None:
    """The value of the header ``name`` in ``head`` (both in lower case), or None."""
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()
