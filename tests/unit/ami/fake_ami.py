"""A small AMI server that speaks the protocol as Asterisk 22 does (banner, ``Key: value``
lines, a blank line per message, ``ActionID`` echoed, a refused login answered with
``Response: Error`` and then the connection closed), for what a unit test must drive:
refusals, a server that goes away, events pushed at will."""

from __future__ import annotations

import asyncio
import contextlib

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def message(**headers: str) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"


class FakeAmi:
    def __init__(self, username: str = "callcontrol", secret: str = "s3cret") -> None:
        self.username = username
        self.secret = secret
        self.logins: list[dict[str, str]] = []
        self.writers: list[asyncio.StreamWriter] = []
        # action -> its messages (the response, then any listed events); ActionID added
        self.answers: dict[str, list[dict[str, str]]] = {}
        self._server: asyncio.Server | None = None
        self.port = 0
        self.changed = asyncio.Condition()  # notified at every login attempt

    async def start(self, port: int = 0) -> FakeAmi:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close the listener and every connection (a PBX that went away)."""
        if self._server is not None:
            self._server.close()
            for writer in self.writers:
                writer.close()
            await self._server.wait_closed()
            self._server = None
        self.writers.clear()

    async def push(self, **headers: str) -> None:
        """An event to every logged-in connection."""
        for writer in self.writers:
            writer.write(message(**headers))
            await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(BANNER)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                fields = dict(
                    line.split(": ", 1) for line in raw.decode().split("\r\n") if ": " in line
                )
                action, action_id = fields.get("Action", ""), fields.get("ActionID", "")
                if action == "Login":
                    self.logins.append(fields)
                    async with self.changed:
                        self.changed.notify_all()
                    if (fields.get("Username"), fields.get("Secret")) != (
                        self.username,
                        self.secret,
                    ):
                        writer.write(
                            message(
                                Response="Error",
                                ActionID=action_id,
                                Message="Authentication failed",
                            )
                        )
                        await writer.drain()
                        break  # Asterisk closes the session after a refused login
                    writer.write(
                        message(
                            Response="Success",
                            ActionID=action_id,
                            Message="Authentication accepted",
                        )
                    )
                    self.writers.append(writer)
                elif action == "Ping":
                    writer.write(message(Response="Success", ActionID=action_id, Ping="Pong"))
                elif action in self.answers:
                    for headers in self.answers[action]:
                        writer.write(message(ActionID=action_id, **headers))
                else:
                    writer.write(
                        message(Response="Error", ActionID=action_id, Message="Invalid/unknown")
                    )
                await writer.drain()
        if writer in self.writers:
            self.writers.remove(writer)
        writer.close()
