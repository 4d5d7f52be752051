"""``callcontrol agi``: the FastAGI server for dialplan-driven deployments.

Two scripts, one request each (a connection is one request, as Asterisk makes it):

    AGI(agi://127.0.0.1:4573/authorize,inbound,${EXTEN})     a carrier's call to a number
    AGI(agi://127.0.0.1:4573/authorize,outbound,${EXTEN})    a user's call (the user is
                                    the channel's endpoint, or a third argument: extension)
    AGI(agi://127.0.0.1:4573/settle,${CALLCONTROL_AGI_CALL_ID},${ANSWEREDTIME},${DIALSTATUS})
                                    at hangup; without arguments the three are read from
                                    the channel (GET VARIABLE), and HANGUPCAUSE always is

``authorize`` sets, on the channel, ``CALLCONTROL_AGI_CALL_ID`` first (so a hangup
handler can settle whatever follows), then ``CALLCONTROL_MAX_SECONDS`` and
``CALLCONTROL_MAX_MS`` (for ``Dial(...,L(ms))`` or ``TIMEOUT(absolute)``),
``CALLCONTROL_DIAL`` (what to dial), ``CALLCONTROL_CALLERID`` (outbound: the number to
present) and last ``CALLCONTROL_STATUS`` (``calls.Status``), all after the call id in
one ``EXEC MSet`` (``AgiChannel.set_variables``). The dialplan dials only
when the status is ``ok`` (or ``emergency``): an unreachable server, a timeout or an
error leaves no status, or ``failed``, and the call is refused. A failed or timed
out authorize releases whatever it held at once; so does a channel that hung up
before it could be dialled. ``settle`` sets ``CALLCONTROL_STATUS=settled``.

Logs carry the call id (``logs.call_id_var``); the request's environment is never
logged whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable

from callcontrol.agi.calls import AgiCalls, Authorization, CallRequest, Status, new_agi_call_id
from callcontrol.agi.channel import AgiChannel
from callcontrol.agi.protocol import MAX_LINE, AgiError, AgiHangup, AgiRequest
from callcontrol.calls.outbound import endpoint_of
from callcontrol.domain.call_records import AGI_CALL_PREFIX, CallDirection
from callcontrol.errors import CallControlError
from callcontrol.logs import call_id_var

__all__ = ["CALL_ID_VAR", "CHANNEL_VARIABLES", "STATUS_VAR", "AgiServer"]

log = logging.getLogger(__name__)

CALL_ID_VAR = "CALLCONTROL_AGI_CALL_ID"
STATUS_VAR = "CALLCONTROL_STATUS"
MAX_SECONDS_VAR = "CALLCONTROL_MAX_SECONDS"
MAX_MS_VAR = "CALLCONTROL_MAX_MS"
DIAL_VAR = "CALLCONTROL_DIAL"
CALLERID_VAR = "CALLCONTROL_CALLERID"
#: The channel variables authorize sets (not settings, although they share the prefix).
CHANNEL_VARIABLES = (CALL_ID_VAR, MAX_SECONDS_VAR, MAX_MS_VAR, DIAL_VAR, CALLERID_VAR, STATUS_VAR)
SETTLED = "settled"
CLEANUP_TIMEOUT = 10.0  # seconds for releasing a failed authorize's hold
SWEEP_INTERVAL = 60.0  # seconds between runs of the stale-hold rule

_CALL_ID = re.compile(re.escape(AGI_CALL_PREFIX) + r"[0-9a-f]{32}")
_TALK = re.compile(r"\d{1,7}(?:\.\d{1,6})?")

Script = Callable[[AgiChannel, AgiRequest], Awaitable[None]]


class AgiServer:
    def __init__(self, calls: AgiCalls, *, timeout: float, authorize_timeout: float) -> None:
        self.calls = calls
        self.timeout = timeout  # one AGI read or command
        self.authorize_timeout = authorize_timeout  # the database work of one authorize
        self.scripts: dict[str, Script] = {
            "authorize": self.authorize,
            "settle": self.settle,
        }
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self.handle, host, port, limit=MAX_LINE)

    async def run(self, host: str, port: int, stopping: asyncio.Event) -> None:
        """Serve until ``stopping`` is set, sweeping stale holds; then finish the
        requests in progress (for a few seconds) and return."""
        await self._sweep()  # holds left by calls settled by no one while it was down
        server = await self.start(host, port)
        log.info("FastAGI server listening on %s:%d", host, port)
        sweeper = asyncio.create_task(self._sweep_forever())
        try:
            await stopping.wait()
        finally:
            server.close()
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await self.wait_idle(CLEANUP_TIMEOUT)
            await server.wait_closed()
            log.info("FastAGI server stopped")

    async def wait_idle(self, within: float) -> None:
        """Wait (at most ``within`` s) until no request is in progress."""
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=within)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            await self._sweep()

    async def _sweep(self) -> None:
        try:
            await self.calls.sweep()
        except CallControlError as exc:
            log.error("could not sweep stale AGI holds: %s", exc)

    # ---- one connection -------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: read the request, run its script, close."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        channel = AgiChannel(reader, writer, timeout=self.timeout)
        peer = _peer(writer)
        token = call_id_var.set("-")
        try:
            request = await channel.read_request()
            script = self.scripts.get(request.script)
            if script is None:
                log.warning("unknown AGI script %r from %s: refused", request.script[:64], peer)
                await channel.set_variable(STATUS_VAR, Status.INVALID.value)
                return
            await script(channel, request)
        except AgiError as exc:
            log.warning("AGI from %s: %s", peer, exc)
        except CallControlError as exc:
            log.error("AGI request from %s: %s", peer, exc)
        except Exception:  # a bug: log it, keep serving; the dialplan fails closed
            log.exception("AGI request from %s failed", peer)
        finally:
            call_id_var.reset(token)
            await channel.close()
            if task is not None:
                self._connections.discard(task)

    # ---- authorize ------------------------------------------------------------------------

    async def authorize(self, channel: AgiChannel, request: AgiRequest) -> None:
        call_id = new_agi_call_id()
        call_id_var.set(call_id)
        try:
            call = _call_request(call_id, request)
        except ValueError as exc:
            log.warning("refusing a malformed authorize request: %s", exc)
            await channel.set_variable(STATUS_VAR, Status.INVALID.value)
            return
        # First the call id: from here on the hangup handler can settle the call.
        await channel.set_variable(CALL_ID_VAR, call_id)
        try:
            async with asyncio.timeout(self.authorize_timeout):
                auth = await self.calls.authorize(call)
        except TimeoutError:
            log.error("authorize took over %g s: refusing the call", self.authorize_timeout)
            auth = await self._failed(call_id)
        except Exception as exc:  # fail closed whatever broke (the database, a bug)
            log.error("authorize failed: refusing the call: %s", exc, exc_info=_bug(exc))
            auth = await self._failed(call_id)
        try:
            await self._answer(channel, auth)
        except AgiError:
            if auth.status in (Status.OK, Status.EMERGENCY):
                log.info("the channel left before it could be dialled: releasing its hold")
                await self._abandon(call_id)
            raise
        if channel.hung_up and auth.status in (Status.OK, Status.EMERGENCY):
            log.info("the channel hung up during authorize: releasing its hold")
            await self._abandon(call_id)

    async def _answer(self, channel: AgiChannel, auth: Authorization) -> None:
        """The authorization's variables, the status last, in one round trip where
        they allow it (``AgiChannel.set_variables``): a broken connection leaves no
        status, and the dialplan refuses the call."""
        pairs: list[tuple[str, str]] = []
        if auth.status in (Status.OK, Status.EMERGENCY):
            pairs += [
                (MAX_SECONDS_VAR, str(auth.max_seconds)),
                (MAX_MS_VAR, str(auth.max_seconds * 1000)),
                (DIAL_VAR, auth.dial),
            ]
            if auth.caller_id:
                pairs.append((CALLERID_VAR, auth.caller_id))
        pairs.append((STATUS_VAR, auth.status.value))
        await channel.set_variables(pairs)

    async def _failed(self, call_id: str) -> Authorization:
        await self._abandon(call_id)
        return Authorization(Status.FAILED)

    async def _abandon(self, call_id: str) -> None:
        """Release a call's hold and close its record, shielded and bounded: the
        request may be ending (closed socket) while this runs."""
        cleanup = asyncio.ensure_future(self.calls.abandon(call_id))
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                await asyncio.shield(cleanup)
        except Exception as exc:
            log.error(
                "could not release the call's hold (%s): the stale-hold rule will",
                exc,
            )

    # ---- settle ---------------------------------------------------------------------------

    async def settle(self, channel: AgiChannel, request: AgiRequest) -> None:
        args = request.args
        call_id = request.arg(1) or (await channel.get_variable(CALL_ID_VAR) or "")
        if not call_id:
            log.info("settle: the channel has no AGI call id (never authorized): nothing to do")
            return
        if not _CALL_ID.fullmatch(call_id):
            log.warning("settle: %r is not an AGI call id", call_id[:48])
            await _quietly(channel.set_variable(STATUS_VAR, Status.INVALID.value))
            return
        call_id_var.set(call_id)
        talk_text = request.arg(2) if len(args) >= 2 else await _get(channel, "ANSWEREDTIME")
        dial_status = request.arg(3) if len(args) >= 3 else await _get(channel, "DIALSTATUS")
        cause_text = await _get(channel, "HANGUPCAUSE")
        talk = _talk_seconds(talk_text)
        if talk is None:
            log.error(
                "settle: talk time %r is not a number of seconds: released uncharged "
                "(reconcile it against the PBX's CDR)",
                talk_text[:32],
            )
        cause = int(cause_text) if cause_text.isdigit() and len(cause_text) < 4 else None
        settled = await self.calls.settle(call_id, talk, dial_status, cause)
        if not settled.already:
            log.info("AGI call settled: cost %d micro-credits", settled.cost)
        await _quietly(channel.set_variable(STATUS_VAR, SETTLED))


def _call_request(call_id: str, request: AgiRequest) -> CallRequest:
    """authorize's arguments: direction, then the dialled number (default: the
    extension), then (outbound) the user's extension (default: the channel's endpoint)."""
    kind = request.arg(1).lower()
    try:
        direction = CallDirection(kind)
    except ValueError:
        raise ValueError(
            f"the first argument must be inbound or outbound, not {kind[:32]!r}"
        ) from None
    if direction is CallDirection.INTERNAL:
        raise ValueError("the first argument must be inbound or outbound")
    dialled = request.arg(2) or request.get("extension")
    if not dialled or len(dialled) > 40 or not re.fullmatch(r"\+?[0-9]+", dialled):
        raise ValueError(f"no dialled number (got {dialled[:40]!r})")
    channel_name = request.get("channel")
    if direction is CallDirection.INBOUND:
        caller = request.get("callerid")
    else:
        caller = request.arg(3) or (endpoint_of(channel_name) if channel_name else "")
    if len(caller) > 64:
        raise ValueError("a caller id longer than 64 characters")
    return CallRequest(
        call_id=call_id,
        direction=direction,
        dialled=dialled,
        caller=caller,
        channel_id=request.get("uniqueid") or channel_name or "unknown",
    )


def _talk_seconds(text: str) -> int | None:
    """ANSWEREDTIME or CDR(billsec): whole seconds (a fraction is not billed); empty: 0."""
    text = text.strip()
    if not text:
        return 0
    if not _TALK.fullmatch(text):
        return None
    return int(float(text))


async def _get(channel: AgiChannel, name: str) -> str:
    return await channel.get_variable(name) or ""


async def _quietly(step: Awaitable[None]) -> None:
    """A last word to a channel that may be gone by now."""
    with contextlib.suppress(AgiHangup, AgiError):
        await step


def _bug(exc: Exception) -> bool:
    """Our own errors are explained by their message; anything else is a bug."""
    return not isinstance(exc, CallControlError)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
