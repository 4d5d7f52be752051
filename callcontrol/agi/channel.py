"""One FastAGI conversation over a socket: read the request, then one command at a time.

The rules that keep the conversation in step (panoramisk's FastAGI breaks them: it
loops forever on a half-open connection and may pair an answer with the wrong
command):

* every read is bounded (``protocol.MAX_LINE`` per line, ``MAX_ENV_LINES`` lines of
  environment) and under a deadline: a peer that stops half way, or never sends the
  empty line, is dropped after ``timeout`` seconds;
* one command in flight per connection (a lock), and its answer is the next line
  that is neither ``HANGUP`` nor part of a 520 usage text;
* a timeout, a closed socket or an answer that does not parse leaves the
  connection ``broken``: no further command is sent on it, since a late answer
  would be read as the answer to the next command.

``HANGUP`` (the channel hung up while the script runs) sets ``hung_up`` and the
conversation goes on: Asterisk still answers the commands allowed on a dead channel
(GET/SET VARIABLE), which is how a settle reads the talk time in a hangup handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence

from callcontrol.agi.protocol import (
    HANGUP_LINE,
    MAX_ENV_LINES,
    MAX_LINE,
    MAX_USAGE_LINES,
    AgiCommandError,
    AgiError,
    AgiHangup,
    AgiProtocolError,
    AgiRequest,
    AgiResult,
    AgiTimeout,
    parse_env_line,
    parse_result,
    quote_arg,
)

__all__ = ["AgiChannel", "read_line"]


async def read_line(reader: asyncio.StreamReader) -> str:
    """One line without its end; AgiHangup at a clean end of stream, AgiProtocolError
    for a line over the reader's limit or cut off by the end of stream."""
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise AgiProtocolError("the connection closed in the middle of a line") from None
        raise AgiHangup("the connection closed") from None
    except asyncio.LimitOverrunError:
        raise AgiProtocolError(f"a line longer than {MAX_LINE} bytes") from None
    except OSError as exc:  # reset by the peer
        raise AgiHangup(f"the connection failed: {exc}") from exc
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


# What ``set_variables`` sends in one MSet: a variable name, and a value MSet takes as
# it is (a number, a dial string, a status).
_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_PLAIN = re.compile(r"[A-Za-z0-9_+@./:*#-]*")


class AgiChannel:
    """The Asterisk channel behind one FastAGI connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.hung_up = False  # Asterisk said HANGUP: the channel is gone
        self.broken = False  # out of step or closed: send nothing more
        self._lock = asyncio.Lock()

    async def read_request(self) -> AgiRequest:
        """The request's environment, up to its empty line, within ``timeout``."""
        env: dict[str, str] = {}
        try:
            async with asyncio.timeout(self.timeout):
                while line := await read_line(self.reader):
                    if len(env) >= MAX_ENV_LINES:
                        raise AgiProtocolError(
                            f"a request of more than {MAX_ENV_LINES} environment lines"
                        )
                    name, value = parse_env_line(line)
                    env[name] = value
        except TimeoutError:
            self.broken = True
            raise AgiTimeout(f"no complete AGI request in {self.timeout:g} s") from None
        except AgiHangup:
            self.broken = True
            raise AgiProtocolError("the connection closed before the request ended") from None
        except AgiError:
            self.broken = True
            raise
        if not env:
            self.broken = True
            raise AgiProtocolError("an empty AGI request")
        return AgiRequest(env)

    async def command(self, text: str) -> AgiResult:
        """Send one command, return its ``200 result=`` answer."""
        if self.broken:
            raise AgiHangup("the AGI connection is closed")
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    self.writer.write(text.encode() + b"\n")
                    await self.writer.drain()
                    return await self._answer()
            except TimeoutError:
                self.broken = True
                raise AgiTimeout(
                    f"Asterisk did not answer {text.split(' ', 2)[:2]} in {self.timeout:g} s"
                ) from None
            except OSError as exc:
                self.broken = True
                raise AgiHangup(f"the connection failed: {exc}") from exc
            except AgiCommandError:
                raise  # the whole answer was read: still in step
            except AgiError:
                self.broken = True
                raise

    async def _answer(self) -> AgiResult:
        while True:
            line = await read_line(self.reader)
            if line == HANGUP_LINE:
                self.hung_up = True
                continue
            if line.startswith("520-"):
                for _ in range(MAX_USAGE_LINES):
                    if (await read_line(self.reader)).startswith("520 "):
                        raise AgiCommandError("Asterisk refused the command's syntax (520)")
                raise AgiProtocolError(f"a 520 answer of more than {MAX_USAGE_LINES} lines")
            return parse_result(line)

    async def get_variable(self, name: str) -> str | None:
        """A channel variable or function (``CDR(billsec)``); None when unset."""
        answer = await self.command(f"GET VARIABLE {name}")
        return answer.data if answer.result == 1 else None

    async def set_variable(self, name: str, value: str) -> None:
        answer = await self.command(f"SET VARIABLE {name} {quote_arg(value)}")
        if answer.result != 1:
            raise AgiCommandError(f"Asterisk did not set {name} (result={answer.result})")

    async def set_variables(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Set variables in this order: in one round trip (``EXEC MSet``) when every
        value is plain (MSet splits on commas and bars, strips quotes, reads
        backslashes), else one ``SET VARIABLE`` each."""
        plain = all(_NAME.fullmatch(name) and _PLAIN.fullmatch(value) for name, value in pairs)
        if len(pairs) < 2 or not plain:
            for name, value in pairs:
                await self.set_variable(name, value)
            return
        text = ",".join(f"{name}={value}" for name, value in pairs)
        answer = await self.command(f"EXEC MSet {quote_arg(text)}")
        if answer.result != 0:
            raise AgiCommandError(f"Asterisk did not run MSet (result={answer.result})")

    async def close(self) -> None:
        """Close the socket: Asterisk's AGI() returns and the dialplan goes on."""
        self.broken = True
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(self.timeout):
                await self.writer.wait_closed()
