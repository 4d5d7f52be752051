"""The app's own cost per call, without a PBX: the call path over the fake ARI server.

    .venv/bin/python bench/profile_calls.py [--calls 200] [--kind routed|flow] [--profile 25]
                                            [--live 200]

Runs ``--calls`` calls one after another through the real call code (CallManager,
InboundCall, the charging session, a real SQLite database) against the fake ARI
server of the unit tests (tests/unit/calls/calls_harness.py), and prints per call:
the database statements (counted by a SQLAlchemy listener, BEGIN/COMMIT included), the
transactions (sessions and units of work: ``Database.transactions``),
the ARI requests, and the process CPU time. The fake server runs in the same
process, so the CPU time includes its side of each request (an upper bound of the
app's cost); ``--profile N`` prints the N most expensive functions (cProfile,
cumulative), which separate the two.

``routed``: a number routed to a user: ring, answer, bridge, 2 s of talk, hang up.
``flow``: a number routed to an IVR flow: answer, prompt, key 1, ring, bridge, hang up;
also the time from the key's event leaving the fake server to the app's next ARI
request (p50, p99: the app's DTMF -> next command latency, without a PBX).
``--live N``: then N routed calls are left up (bridged, charged): the memory the
process allocated per live call (tracemalloc; the fake server's channel entries
included).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "unit" / "calls"), str(REPO / "tests" / "unit" / "ari")]

import aiosqlite.core  # noqa: E402
from calls_harness import FLOW_NUMBER, ROUTED, App, make_org  # noqa: E402
from fake_ari import FakeAri  # noqa: E402
from sqlalchemy import event  # noqa: E402

from callcontrol.calls.call import Call  # noqa: E402
from callcontrol.domain.money import MICRO  # noqa: E402
from callcontrol.store.migrate import upgrade  # noqa: E402

SORT = os.environ.get("BENCH_SORT", "tottime")

FLOW = """\
start: main
menus:
  main:
    prompts: [hello-world]
    options:
      "1": { ring: alice }
    timeout: 5
    on_failure: hangup
"""


HOPS = [0]  # calls handed to aiosqlite's thread (each a round trip through the loop)


def count_hops() -> None:
    execute = aiosqlite.core.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        HOPS[0] += 1
        return await execute(self, fn, *args, **kwargs)

    aiosqlite.core.Connection._execute = counted  # type: ignore[method-assign]


DTMF_MS: list[float] = []  # key event sent -> the app's next ARI request (flow calls)


async def connect_call(app: App, n: int, kind: str) -> tuple[Call, str]:
    """A call up to the bridge with alice, charging started; the call and its carrier leg."""
    carrier = f"1715000000.{n}"
    number = ROUTED if kind == "routed" else FLOW_NUMBER
    call = await app.carrier_call(carrier, number, ringing=True)  # as dialplan/extensions.conf
    if kind == "flow":
        await app.request("POST", f"/ari/channels/{carrier}/play")
        asked = len(app.fake.requests)
        sent = time.perf_counter()
        await app.press(carrier, "1")
        await app.fake.wait_until(lambda: len(app.fake.requests) > asked)
        DTMF_MS.append((time.perf_counter() - sent) * 1e3)
    callee = await app.answer(call)
    await app.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
    await app.fake.wait_until(lambda: len(app.variables_set(callee, "TIMEOUT(absolute)")) > 0)
    return call, carrier


async def one_call(app: App, n: int, kind: str) -> None:
    call, carrier = await connect_call(app, n, kind)
    app.clock.advance(2)
    await app.hang_up(carrier)
    record = await app.ended(call)
    assert record.charge_state == "settled", record


async def memory_per_call(app: App, live: int) -> float:
    """Bytes allocated per live (bridged, charged) call, by tracemalloc."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(10_000, 10_000 + live):
        await connect_call(app, n, "routed")
        app.fake.requests.clear()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / live


async def run(calls: int, kind: str, profile: int, live: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        template = work / "template.db"
        upgrade(f"sqlite+aiosqlite:///{template}")
        url = await make_org(template, work, credits=10**5 * MICRO)  # live calls hold a lot
        (work / "flows").mkdir()
        (work / "flows" / "main.yaml").write_text(FLOW)
        fake = FakeAri()
        fake.channelvars = ("CALLCONTROL_CALL_ID", "CALLCONTROL_ROLE")
        await fake.start()
        app = App(fake, url, work, flows=True)
        await app.start()
        statements: Counter[str] = Counter()

        def count(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
            statements[statement.split(None, 1)[0].upper()] += 1

        last = [""]

        def trace(statement: str) -> None:
            # Python 3.11 reports a statement again when it starts a trigger (the
            # ledger's), with the statement's own text: count it once.
            if statement == last[0]:
                return
            last[0] = statement
            word = statement.split(None, 1)[0].upper()
            if word not in ("COMMIT", "ROLLBACK"):  # as SQLAlchemy's events: BEGIN counts
                statements[word] += 1

        # (getattr: the script also runs against older checkouts, for "before" numbers)
        for engine in getattr(app.db, "sync_engines", [app.db.engine.sync_engine]):
            if engine.dialect.driver == "pysqlite":
                # SQLite's unit engine: its prepared and text statements run straight on
                # the driver's cursor (store.unit.Plan), unseen by SQLAlchemy's events.
                def traced(dbapi_connection: Any, _record: Any = None) -> None:
                    dbapi_connection.set_trace_callback(trace)

                event.listen(engine, "connect", traced)

                async def trace_open(session: Any) -> None:
                    # the connection already open, which the unit thread keeps
                    traced(session.get_bind().connection.driver_connection)

                await app.db.unit(trace_open)
            else:
                event.listen(engine, "before_cursor_execute", count)
        try:
            await one_call(app, 0, kind)  # warm up: rates, flows, connections
            statements.clear()
            HOPS[0] = 0
            transactions = getattr(app.db, "transactions", 0)
            threaded = getattr(app.db, "deferred_to_thread", 0)  # SQLite units not inline
            fake.requests.clear()
            profiler = cProfile.Profile() if profile else None
            cpu, wall = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            ari = 0
            for n in range(1, calls + 1):
                await one_call(app, n, kind)
                ari += len(fake.requests)
                if n == 1:
                    first = [f"{r.method} {r.path}" for r in fake.requests]
                fake.requests.clear()  # keep the fake's bookkeeping O(1) per call
            if profiler:
                profiler.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            counted, hops = Counter(statements), HOPS[0]
            transactions = getattr(app.db, "transactions", 0) - transactions
            threaded = getattr(app.db, "deferred_to_thread", 0) - threaded
            transactions = transactions or counted["BEGIN"]  # an older checkout
            per_call = await memory_per_call(app, live) if live else 0.0
        finally:
            await app.close()
            await fake.close()
    total = sum(counted.values())
    print(f"{kind}: {calls} calls, {wall:.2f} s wall")
    print(f"  CPU per call (app + fake ARI): {cpu / calls * 1e3:.2f} ms")
    print(f"  database statements per call: {total / calls:.1f}", end="  (")
    print(", ".join(f"{k} {v / calls:.1f}" for k, v in counted.most_common()) + ")")
    print(f"  transactions per call (sessions + units of work): {transactions / calls:.1f}")
    print(f"  SQLite units that met another writer and ran in the thread: {threaded}")
    print(f"  SQLite thread hops per call (aiosqlite): {hops / calls:.1f}")
    print(f"  ARI requests per call: {ari / calls:.1f}")
    for request in first:
        print(f"    {request}")
    if DTMF_MS:
        ordered = sorted(DTMF_MS)
        p50, p99 = (
            ordered[len(ordered) // 2],
            ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)],
        )
        print(f"  DTMF -> next ARI request: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    if live:
        print(f"  memory per live call ({live} bridged and charged): {per_call / 1024:.1f} KiB")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(SORT).print_stats(profile)
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--kind", choices=("routed", "flow"), default="routed")
    parser.add_argument("--profile", type=int, default=0)
    parser.add_argument("--live", type=int, default=0, help="then N calls left up: memory")
    args = parser.parse_args()
    count_hops()
    asyncio.run(run(args.calls, args.kind, args.profile, args.live))


if __name__ == "__main__":
    main()
