"""The ARI client's HTTP/1.1 connections (callcontrol/ari/http.py) against a real local
server whose answers each test writes byte for byte: keep-alive, the pool's limit,
connections the server closes, chunked answers, timeouts and resets."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from fake_ari import APP, PASSWORD, USERNAME, FakeAri

from callcontrol.ari import AriClient, http
from callcontrol.errors import AriError, AriHttpError, AriNotFound, AriUnavailable

CHANNEL = "1715000000.1"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n" + (
    b'{"a": 1}'
)
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"

# (request number from 1, its head, the connection) -> whether to read the next request
Answer = Callable[[int, bytes, asyncio.StreamWriter], Awaitable[bool]]


async def answer_ok(_n: int, _head: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(OK)
    return True


class Peer:
    """An HTTP/1.1 server on 127.0.0.1 that counts its connections and lets ``answer``
    write each answer."""

    def __init__(self, answer: Answer = answer_ok) -> None:
        self.answer = answer
        self.heads: list[bytes] = []  # every request's head, in order
        self.accepted = 0  # connections ever accepted
        self.open = 0  # connections open now
        self.url = ""
        self._writers: set[asyncio.StreamWriter] = set()
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self._writers.add(writer)
        await self._notify()
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break  # the client closed the connection
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        await reader.readexactly(int(line.partition(b":")[2]))
                self.heads.append(head)
                await self._notify()
                if not await self.answer(len(self.heads), head, writer):
                    break
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()
            self.open -= 1
            await self._notify()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    server = Peer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def ari(peer: Peer) -> AsyncIterator[AriClient]:
    client = AriClient(peer.url, USERNAME, PASSWORD, app=APP, timeout=2.0)
    yield client
    await client.close()


async def test_sequential_requests_share_one_kept_alive_connection(
    peer: Peer, ari: AriClient
) -> None:
    for _ in range(5):
        assert await ari.request("GET", "/asterisk/info") == {"a": 1}
    assert (peer.accepted, len(peer.heads)) == (1, 5)
    head = peer.heads[0].decode()
    assert head.startswith("GET /ari/asterisk/info HTTP/1.1\r\n")
    assert f"Host: {peer.url.removeprefix('http://')}\r\n" in head
    assert "Authorization: Basic " in head


async def test_the_pool_opens_at_most_64_connections(peer: Peer, ari: AriClient) -> None:
    """65 requests at once: 64 connections; the 65th waits and goes on one of them."""
    release = asyncio.Event()

    async def held(_n: int, _head: bytes, writer: asyncio.StreamWriter) -> bool:
        await release.wait()
        writer.write(NO_CONTENT)
        return True

    peer.answer = held
    calls = asyncio.gather(*(ari.answer(f"c-{n}") for n in range(65)))
    await peer.wait_until(lambda: len(peer.heads) == 64)
    assert peer.accepted == 64
    release.set()
    await calls
    assert (peer.accepted, len(peer.heads)) == (64, 65)


async def test_an_idle_connection_the_server_closed_is_not_reused(
    peer: Peer, ari: AriClient
) -> None:
    """Asterisk closes a kept-alive session idle for session_keep_alive."""

    async def then_close(_n: int, _head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        return False

    peer.answer = then_close
    await ari.request("GET", "/asterisk/info")
    await peer.wait_until(lambda: peer.open == 0)
    assert await ari.request("GET", "/asterisk/info") == {"a": 1}
    assert (peer.accepted, len(peer.heads)) == (2, 2)


async def test_a_reused_connection_closed_without_an_answer_sends_again(
    peer: Peer, ari: AriClient
) -> None:
    """The server closes the kept-alive connection as the second request arrives on it:
    the request goes once more, on a new connection."""

    async def close_the_second(n: int, _head: bytes, writer: asyncio.StreamWriter) -> bool:
        if n == 2:
            return False
        writer.write(NO_CONTENT)
        return True

    peer.answer = close_the_second
    await ari.answer(CHANNEL)
    await ari.answer(CHANNEL)
    assert peer.accepted == 2
    assert [h.split(b"\r\n")[0] for h in peer.heads] == [
        f"POST /ari/channels/{CHANNEL}/answer HTTP/1.1".encode()
    ] * 3


async def test_a_connection_idle_too_long_is_not_reused(
    peer: Peer, ari: AriClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "IDLE_LIFETIME", 0.0)
    await ari.request("GET", "/asterisk/info")
    await ari.request("GET", "/asterisk/info")
    assert peer.accepted == 2
    await peer.wait_until(lambda: peer.open == 1)  # the client closed the first


async def test_a_chunked_answer_arriving_byte_by_byte(peer: Peer, ari: AriClient) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b'7;name=value\r\n{"id": \r\n'
        b'A\r\n"chan-1", \r\n'
        b'd\r\n"state": "Up"\r\n'
        b"1\r\n}\r\n"
        b"0\r\nX-Trailer: yes\r\n\r\n"
    )

    async def trickle(_n: int, _head: bytes, writer: asyncio.StreamWriter) -> bool:
        for i in range(len(answer)):
            writer.write(answer[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0)  # let the client read each byte on its own
        return True

    peer.answer = trickle
    assert await ari.request("GET", "/channels/chan-1") == {"id": "chan-1", "state": "Up"}
    assert await ari.request("GET", "/channels/chan-1") == {"id": "chan-1", "state": "Up"}
    assert peer.accepted == 1  # the connection stays after a chunked answer


async def test_connection_close_is_obeyed(peer: Peer, ari: AriClient) -> None:
    async def close_asked(_n: int, _head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        return True  # the server itself would keep it: the client must close it

    peer.answer = close_asked
    await ari.request("GET", "/asterisk/info")
    await peer.wait_until(lambda: peer.open == 0)
    await ari.request("GET", "/asterisk/info")
    assert peer.accepted == 2


async def test_a_body_that_ends_with_the_connection(peer: Peer, ari: AriClient) -> None:
    async def http10(_n: int, _head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"b": [1, 2]}')
        return False

    peer.answer = http10
    assert await ari.request("GET", "/asterisk/info") == {"b": [1, 2]}
    assert await ari.request("GET", "/asterisk/info") == {"b": [1, 2]}
    assert peer.accepted == 2


async def test_a_timed_out_connection_is_closed_not_reused(peer: Peer) -> None:
    async def first_never(n: int, _head: bytes, writer: asyncio.StreamWriter) -> bool:
        if n > 1:
            writer.write(NO_CONTENT)
        return True  # no answer to the first: read on, until the client closes

    peer.answer = first_never
    async with AriClient(peer.url, USERNAME, PASSWORD, app=APP, timeout=0.2) as ari:
        with pytest.raises(AriUnavailable, match=r"no answer within 0\.2 s"):
            await ari.answer(CHANNEL)
        assert ari.latency == pytest.approx(0.02)
        await peer.wait_until(lambda: peer.open == 0)  # the client closed it
        await ari.answer(CHANNEL)
    assert (peer.accepted, len(peer.heads)) == (2, 2)


async def test_a_reset_mid_answer_is_unavailable_and_not_sent_again(
    peer: Peer, ari: AriClient
) -> None:
    async def reset(_n: int, _head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id": ')
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST
        return False

    peer.answer = reset
    with pytest.raises(AriUnavailable) as info:
        await ari.request("GET", "/asterisk/info")
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert not isinstance(info.value.__cause__, http.ServerDisconnected)
    assert len(peer.heads) == 1


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 14\r\n\r\nno such thing!",
            AriNotFound,
            "answered 404: no such thing!$",
        ),
        (
            b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"11\r\nAllocation failed\r\n0\r\n\r\n",
            AriHttpError,
            "answered 500: Allocation failed$",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n<ok>", AriError, "not JSON"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", AriError, "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x1\r\n\r\n", AriError, "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", AriError, "chunk"),
    ],
)
async def test_answers_map_to_the_project_errors(
    peer: Peer, ari: AriClient, answer: bytes, error: type[AriError], text: str
) -> None:
    async def scripted(_n: int, _head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        return True

    peer.answer = scripted
    with pytest.raises(error, match=text) as info:
        await ari.request("GET", "/channels/x")
    assert type(info.value) is error


async def test_close_fails_requests_in_flight_and_closes_connections(
    peer: Peer, ari: AriClient
) -> None:
    release = asyncio.Event()

    async def held(_n: int, _head: bytes, writer: asyncio.StreamWriter) -> bool:
        await release.wait()
        return True

    peer.answer = held
    request = asyncio.ensure_future(ari.answer(CHANNEL))
    await peer.wait_until(lambda: len(peer.heads) == 1)
    await ari.close()
    with pytest.raises(AriUnavailable):
        await request
    with pytest.raises(AriUnavailable, match="closed"):
        await ari.answer(CHANNEL)
    release.set()  # the server reads on: it sees the connection closed
    await peer.wait_until(lambda: peer.open == 0)
    assert (peer.accepted, len(peer.heads)) == (1, 1)


async def test_query_values_are_percent_encoded() -> None:
    fake = FakeAri()
    await fake.start()
    fake.add_channel(CHANNEL)
    value = "a&b=c+d e%f/g:h,(i)?#ü"
    try:
        async with AriClient(fake.url, USERNAME, PASSWORD, app=APP) as ari:
            await ari.set_variable(CHANNEL, "TIMEOUT(absolute)", value)
            await ari.originate("PJSIP/alice", app_args="x", caller_id='"Shop" <+4930999000>')
    finally:
        await fake.close()
    assert fake.requests[0].query == {"variable": "TIMEOUT(absolute)", "value": value}
    assert fake.requests[1].query["callerId"] == '"Shop" <+4930999000>'


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_is_spoken_with_a_verified_certificate(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    peer = Peer()
    await peer.start(tls)
    try:
        async with AriClient(peer.url, USERNAME, PASSWORD, app=APP) as ari:
            with pytest.raises(AriUnavailable) as info:  # not signed by a trusted CA
                await ari.request("GET", "/asterisk/info")
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now trusted
        async with AriClient(peer.url, USERNAME, PASSWORD, app=APP) as ari:
            assert await ari.request("GET", "/asterisk/info") == {"a": 1}
            assert await ari.request("GET", "/asterisk/info") == {"a": 1}
    finally:
        await peer.close()
    assert (peer.accepted, len(peer.heads)) == (1, 2)
