"""The `callcontrol agi` log lines the PBX tests wait on (tests/pbx/log_contract.py),
made as the server makes them and matched with the very patterns: a change of
wording fails here, not in the PBX suite."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from agi_harness import StartServer
from agi_peer import AgiPeer
from calls_harness import ROUTED

from callcontrol.logs import FORMAT, CallIdFilter

CONTRACT_FILE = Path(__file__).resolve().parents[2] / "pbx" / "log_contract.py"
spec = importlib.util.spec_from_file_location("log_contract", CONTRACT_FILE)
assert spec is not None and spec.loader is not None
contract = importlib.util.module_from_spec(spec)
spec.loader.exec_module(contract)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(CallIdFilter())
        self.setFormatter(logging.Formatter(FORMAT))
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(self.format(record).splitlines())
        self.changed.set()

    async def wait_for(self, pattern: re.Pattern[str]) -> None:
        async with asyncio.timeout(5):
            while not any(pattern.search(line) for line in self.lines):
                self.changed.clear()
                await self.changed.wait()

    def matches(self, pattern: re.Pattern[str]) -> list[dict[str, str]]:
        found = [m.groupdict() for line in self.lines if (m := pattern.search(line))]
        assert found, f"no line matches {pattern}:\n" + "\n".join(self.lines)
        return found


@pytest.fixture
def log() -> Iterator[Lines]:
    root = logging.getLogger()
    handler, level = Lines(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


async def test_authorize_refuse_settle_lines(agi: StartServer, log: Lines) -> None:
    server = await agi(credits=100_000)  # 0.1: one call of 9 s, then nothing
    ok = await AgiPeer(server.port).run("authorize", "inbound", ROUTED)
    call_id = ok.variables["CALLCONTROL_AGI_CALL_ID"]
    refused = await AgiPeer(server.port).run("authorize", "inbound", ROUTED)
    await AgiPeer(server.port).run("settle", call_id, "4", "ANSWER")
    assert log.matches(contract.AGI_AUTHORIZED) == [{"call_id": call_id, "seconds": "9"}]
    assert log.matches(contract.AGI_REFUSED) == [
        {"call_id": refused.variables["CALLCONTROL_AGI_CALL_ID"], "status": "no_credit"}
    ]
    assert log.matches(contract.AGI_SETTLED) == [{"call_id": call_id, "cost": "50000"}]


async def test_the_listening_line(agi: StartServer, log: Lines) -> None:
    server = await agi()
    stopping = asyncio.Event()
    running = asyncio.create_task(server.server.run("127.0.0.1", 0, stopping))
    try:
        await log.wait_for(contract.AGI_LISTENING)
    finally:
        stopping.set()
        await running
    assert log.matches(contract.AGI_LISTENING) == [{"listen": "127.0.0.1:0"}]
