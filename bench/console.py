"""The console's costs (bench/README.md): not a timed test, run by hand.

    .venv/bin/python bench/console.py history [--records 100000] [--requests 30]
    .venv/bin/python bench/console.py calls [--calls 300] [--concurrency 10] [--clients 20]

``history``: the call-history page with ``--records`` call records (seeded with one
bulk INSERT into a migrated SQLite database) renders its first page in under 200 ms:
the real console app on the real services, signed in, measured through aiohttp's test
client (whole request: auth, query, template); p50 and p99 of ``--requests`` requests
after two warm-up ones.

``calls``: the console must not slow calls. The in-process calls harness
(tests/unit/calls/calls_harness.py: the real call code over a fake ARI and SQLite)
places ``--calls`` calls (``--concurrency`` at a time: ring, answer, hang up, settle)
while the console serves in the same process, with its live-update hub on the harness's
CallManager, as ``serve`` runs them. The SSE clients (``GET /events?calls=1``, the HTML
fragments a browser gets) run in a child process, so this process's CPU time is the
app's alone. Rounds 0, N, N, 0 clients, interleaved; reported: CPU milliseconds per
call and the ratio with clients to without.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parents[1]
for folder in ("tests/unit/calls", "tests/unit/ari", "tests/web"):
    sys.path.insert(0, str(ROOT / folder))

from calls_harness import CALLER, GUARD, ROUTED, App, make_org  # noqa: E402
from console_harness import ADMIN, PASSWORD, sign_in  # noqa: E402
from fake_ari import FakeAri, event_json  # noqa: E402

from callcontrol.config import Settings, load_settings  # noqa: E402
from callcontrol.domain.call_records import Disposition  # noqa: E402
from callcontrol.domain.charging import ChargeState  # noqa: E402
from callcontrol.domain.money import MICRO  # noqa: E402
from callcontrol.services import open_services  # noqa: E402
from callcontrol.store.migrate import upgrade  # noqa: E402
from callcontrol.store.models import CallRecordRow  # noqa: E402
from callcontrol.web.console.app import ConsoleServer, console_app  # noqa: E402

BUDGET_MS = 200.0


def _settings(data: Path) -> Settings:
    return load_settings(
        environ={},
        overrides={
            "data_dir": str(data),
            "flows_dir": str(ROOT / "ivr_flows"),
            "pbx_root": str(data / "no-pbx"),
        },
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---- (a) the call-history page with many records ---------------------------------------


def _records(count: int) -> list[dict[str, Any]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        at = start + timedelta(seconds=30 * i)
        rows.append(
            {
                "call_id": f"bench-{i:07d}",
                "direction": "inbound" if i % 3 else "outbound",
                "caller": f"+4930{i:07d}",
                "callee": "+442079460000",
                "number_e164": "+442079460000",
                "user_name": "alice",
                "channel_id": f"ch-{i}",
                "started_at": at,
                "answered_at": at + timedelta(seconds=3),
                "ended_at": at + timedelta(seconds=63),
                "disposition": "answered",
                "hangup_cause": 16,
                "ended_by": "caller",
                "billable_seconds": 60,
                "cost_micro": 10_000 + 60 * 10_000,
                "charge_state": "settled",
            }
        )
    return rows


async def history(records: int, requests: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        data = Path(tmp)
        upgrade(f"sqlite+aiosqlite:///{data / 'callcontrol.db'}")
        async with open_services(_settings(data)) as services:
            await services.admins.add(ADMIN, PASSWORD)
            began = time.perf_counter()
            async with services.db.session() as session:
                await session.execute(insert(CallRecordRow), _records(records))
            print(f"seeded {records} call records in {time.perf_counter() - began:.1f} s")
            async with TestClient(TestServer(console_app(services))) as client:
                await sign_in(client)
                times: list[float] = []
                for i in range(requests + 2):
                    began = time.perf_counter()
                    response = await client.get("/calls")
                    body = await response.text()
                    elapsed = (time.perf_counter() - began) * 1000
                    assert response.status == 200 and "bench-" in body, response.status
                    if i >= 2:  # warm-up: templates compiled, statements cached
                        times.append(elapsed)
    p50, p99 = statistics.median(times), _percentile(times, 0.99)
    verdict = "OK" if p99 < BUDGET_MS else "OVER BUDGET"
    print(
        f"call history, first page of {records} records, {requests} requests: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (budget {BUDGET_MS:.0f} ms: {verdict})"
    )


# ---- (b) calls with and without SSE clients --------------------------------------------


async def _sse_clients(url: str, token: str, count: int) -> None:
    """The child process: ``count`` streams read until the parent closes stdin."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
        streams = [await http.get(url, headers=headers) for _ in range(count)]
        for stream in streams:
            assert stream.status == 200, stream.status
            await stream.content.readline()  # ": connected"
        print("connected", flush=True)

        async def drain(stream: aiohttp.ClientResponse) -> None:
            with contextlib.suppress(aiohttp.ClientError):
                async for _ in stream.content.iter_any():
                    pass

        readers = [asyncio.create_task(drain(s)) for s in streams]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # EOF: the parent is done
        for reader in readers:
            reader.cancel()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _one_call(app: App, n: int) -> None:
    """Ring, answer, hang up, settle. (The harness's ``carrier_call`` counts dispatched
    events, which concurrent calls share: here the call is awaited by its channel.)"""
    channel = f"bench-{n}"
    app.fake.add_channel(channel, exten=ROUTED, caller_number=CALLER)
    await app.fake.send_event(
        event_json("StasisStart", channel=app.fake.channel(channel), args=["inbound", ROUTED])
    )

    def taken() -> bool:
        return any(channel in c.channels.values() for c in app.manager.calls.values())

    await app.fake.wait_until(taken, GUARD)
    call = app.call_of(channel)
    callee = await app.answer(call)
    await app.request("POST", f"/ari/channels/{callee}/variable", count=2)  # talking, paid
    app.clock.advance(1)
    await app.hang_up(channel)
    record = await app.ended(call)
    if record.disposition != Disposition.ANSWERED or record.charge_state != ChargeState.SETTLED:
        raise RuntimeError(f"call {call.call_id}: {record.disposition}, {record.charge_state}")


async def _round(template: Path, clients: int, calls: int, concurrency: int) -> tuple[float, float]:
    """CPU ms per call and wall seconds for ``calls`` calls with ``clients`` SSE clients."""
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        data = Path(tmp)
        url = await make_org(template, data, credits=1_000_000 * MICRO)
        fake = FakeAri()
        fake.channelvars = ("CALLCONTROL_CALL_ID", "CALLCONTROL_ROLE")
        await fake.start()
        app = await App(fake, url, data).start()
        try:
            async with open_services(_settings(data)) as services:
                await services.admins.add(ADMIN, PASSWORD)
                token = await services.admins.issue_token(ADMIN)
                server = ConsoleServer(
                    f"127.0.0.1:{_free_port()}", console_app(services, live_calls=app.manager)
                )
                await server.start()
                child = None
                try:
                    if clients:
                        child = await asyncio.create_subprocess_exec(
                            sys.executable,
                            __file__,
                            "sse-child",
                            f"{server.url}events?calls=1",
                            token,
                            str(clients),
                            stdin=asyncio.subprocess.PIPE,
                            stdout=asyncio.subprocess.PIPE,
                        )
                        assert child.stdout is not None
                        line = await asyncio.wait_for(child.stdout.readline(), 30)
                        assert line.strip() == b"connected", line
                    gate = asyncio.Semaphore(concurrency)

                    async def placed(n: int) -> None:
                        async with gate:
                            await _one_call(app, n)

                    cpu, wall = time.process_time(), time.perf_counter()
                    await asyncio.gather(*(placed(n) for n in range(calls)))
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                finally:
                    if child is not None and child.stdin is not None:
                        child.stdin.close()
                        await child.wait()
                    await server.stop()
        finally:
            await app.close()
            await fake.close()
    return cpu * 1000 / calls, wall


async def calls_cpu(calls: int, concurrency: int, clients: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        template = Path(tmp) / "template.db"
        upgrade(f"sqlite+aiosqlite:///{template}")
        results: dict[int, list[float]] = {0: [], clients: []}
        for count in (0, clients, clients, 0):
            per_call, wall = await _round(template, count, calls, concurrency)
            results[count].append(per_call)
            print(
                f"{count:3d} SSE clients: {per_call:.2f} CPU ms per call "
                f"({calls} calls in {wall:.1f} s)"
            )
    without, with_clients = statistics.mean(results[0]), statistics.mean(results[clients])
    print(
        f"per-call CPU with {clients} SSE clients / without: {with_clients / without:.2f} "
        f"({with_clients:.2f} / {without:.2f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("history", help="the call-history page with many records")
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=30)
    p = sub.add_parser("calls", help="per-call CPU with and without SSE clients")
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--clients", type=int, default=20)
    p = sub.add_parser("sse-child", help=argparse.SUPPRESS)
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("count", type=int)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.what == "history":
        asyncio.run(history(args.records, args.requests))
    elif args.what == "calls":
        asyncio.run(calls_cpu(args.calls, args.concurrency, args.clients))
    else:
        asyncio.run(_sse_clients(args.url, args.token, args.count))


if __name__ == "__main__":
    main()
