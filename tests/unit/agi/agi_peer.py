"""A peer that speaks FastAGI the way Asterisk does, over a real TCP connection.

``AgiPeer.run`` connects, sends the request's environment (``agi_*`` lines and the
empty line), then answers each command as Asterisk 22 does: ``SET VARIABLE`` stores
the value and answers ``200 result=1``; ``EXEC MSet "a=1,b=2"`` stores each and
answers ``200 result=0``;
``GET VARIABLE`` answers ``200 result=1 (value)`` or ``200 result=0``; anything else
``510 Invalid or unknown command``.
Scripted misbehaviour covers what a live PBX cannot be made to do on cue: hang up
before the Nth command's answer (``HANGUP`` then a closed socket or 511 answers),
stop answering, answer garbage.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Literal

GUARD = 5.0  # seconds: the longest any awaited outcome may take

_SET = re.compile(r'SET VARIABLE (\S+) "(.*)"')
_MSET = re.compile(r'EXEC MSet "(.*)"')
_GET = re.compile(r"GET VARIABLE (\S+)")

Hangup = Literal["close", "dead", "silent", "garbage"]


@dataclass
class AgiPeer:
    port: int
    variables: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    # Before answering command number ``misbehave_at`` (1-based): "close" sends HANGUP
    # and closes; "dead" sends HANGUP and answers 511 from then on; "silent" answers
    # nothing more; "garbage" answers a line that is not AGI.
    misbehave_at: int | None = None
    misbehaviour: Hangup = "close"
    closed_by_server: bool = False

    def env(self, script: str, args: list[str], **extra: str) -> bytes:
        lines = {
            "agi_network": "yes",
            "agi_network_script": script,
            "agi_request": f"agi://127.0.0.1:{self.port}/{script}",
            "agi_channel": "PJSIP/carrier-00000001",
            "agi_language": "en",
            "agi_type": "PJSIP",
            "agi_uniqueid": "1764273600.17",
            "agi_version": "22.10.1",
            "agi_callerid": "+15551234567",
            "agi_calleridname": "unknown",
            "agi_callingpres": "0",
            "agi_dnid": "unknown",
            "agi_context": "callcontrol-agi-carrier",
            "agi_extension": "*88+442079460000",
            "agi_priority": "3",
            "agi_enhanced": "0.0",
            "agi_accountcode": "",
            "agi_threadid": "140000000000000",
            **{f"agi_{k}": v for k, v in extra.items()},
        }
        for i, arg in enumerate(args, 1):
            lines[f"agi_arg_{i}"] = arg
        return "".join(f"{k}: {v}\n" for k, v in lines.items()).encode() + b"\n"

    async def run(self, script: str, *args: str, **extra: str) -> AgiPeer:
        """One AGI request; returns once the server closed the connection."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(self.env(script, list(args), **extra))
            await writer.drain()
            async with asyncio.timeout(GUARD):
                await self._converse(reader, writer)
        finally:
            writer.close()
        return self

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        dead = False
        while line := (await reader.readline()).decode():
            command = line.rstrip("\n")
            self.commands.append(command)
            if len(self.commands) == self.misbehave_at:
                if self.misbehaviour == "silent":
                    continue
                if self.misbehaviour == "garbage":
                    writer.write(b"200 result=yes\n")
                    await writer.drain()
                    continue
                writer.write(b"HANGUP\n")
                await writer.drain()
                if self.misbehaviour == "close":
                    writer.close()
                    return
                dead = True
            writer.write(self.answer(command, dead).encode() + b"\n")
            await writer.drain()
        self.closed_by_server = True

    def answer(self, command: str, dead: bool) -> str:
        if match := _GET.fullmatch(command):
            value = self.variables.get(match[1])
            return "200 result=0" if value is None else f"200 result=1 ({value})"
        if dead:
            return "511 Command Not Permitted on a dead channel or intercept routine"
        if match := _SET.fullmatch(command):
            self.variables[match[1]] = match[2]
            return "200 result=1"
        if match := _MSET.fullmatch(command):  # as MSet(a=1,b=2) does, in order
            for assignment in match[1].split(","):
                name, _, value = assignment.partition("=")
                self.variables[name] = value
            return "200 result=0"
        return "510 Invalid or unknown command"


async def send_raw(port: int, data: bytes, *, half_close: bool = False) -> tuple[bytes, float]:
    """Send ``data``; what the server wrote back before closing, and how long it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(GUARD):
            received = await reader.read()
    finally:
        writer.close()
    return received, loop.time() - started
