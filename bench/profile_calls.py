"""The app's own cost per call, without a PBX: the call path over the fake ARI server.

    .venv/bin/python bench/profile_calls.py [--calls 200] [--kind routed|flow] [--profile 25]

Runs ``--calls`` calls one after another through the real call code (CallManager,
InboundCall, the charging session, a real SQLite database) against the fake ARI
server of the unit tests (tests/unit/calls/calls_harness.py), and prints per call:
the database statements (counted by a SQLAlchemy listener, BEGIN/COMMIT included),
the ARI requests, and the process CPU time. The fake server runs in the same
process, so the CPU time includes its side of each request (an upper bound of the
app's cost); ``--profile N`` prints the N most expensive functions (cProfile,
cumulative), which separate the two.

``routed``: a number routed to a user: ring, answer, bridge, 2 s of talk, hang up.
``flow``: a number routed to an IVR flow: answer, prompt, key 1, ring, bridge, hang up.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "unit" / "calls"), str(REPO / "tests" / "unit" / "ari")]

import aiosqlite.core  # noqa: E402
from calls_harness import FLOW_NUMBER, ROUTED, App, make_org  # noqa: E402
from fake_ari import FakeAri  # noqa: E402
from sqlalchemy import event  # noqa: E402

from callcontrol.store.migrate import upgrade  # noqa: E402

SORT = "tottime"

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


async def one_call(app: App, n: int, kind: str) -> None:
    carrier = f"1715000000.{n}"
    number = ROUTED if kind == "routed" else FLOW_NUMBER
    call = await app.carrier_call(carrier, number)
    if kind == "flow":
        await app.request("POST", f"/ari/channels/{carrier}/play")
        await app.press(carrier, "1")
    callee = await app.answer(call)
    await app.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
    await app.fake.wait_until(lambda: len(app.variables_set(callee, "TIMEOUT(absolute)")) > 0)
    app.clock.advance(2)
    await app.hang_up(carrier)
    record = await app.ended(call)
    assert record.charge_state == "settled", record


async def run(calls: int, kind: str, profile: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        template = work / "template.db"
        upgrade(f"sqlite+aiosqlite:///{template}")
        url = await make_org(template, work)
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

        event.listen(app.db.engine.sync_engine, "before_cursor_execute", count)
        try:
            await one_call(app, 0, kind)  # warm up: rates, flows, connections
            statements.clear()
            HOPS[0] = 0
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
        finally:
            await app.close()
            await fake.close()
    total = sum(statements.values())
    print(f"{kind}: {calls} calls, {wall:.2f} s wall")
    print(f"  CPU per call (app + fake ARI): {cpu / calls * 1e3:.2f} ms")
    print(f"  database statements per call: {total / calls:.1f}", end="  (")
    print(", ".join(f"{k} {v / calls:.1f}" for k, v in statements.most_common()) + ")")
    print(f"  SQLite thread hops per call: {HOPS[0] / calls:.1f}")
    print(f"  ARI requests per call: {ari / calls:.1f}")
    for request in first:
        print(f"    {request}")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(SORT).print_stats(profile)
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--kind", choices=("routed", "flow"), default="routed")
    parser.add_argument("--profile", type=int, default=0)
    args = parser.parse_args()
    count_hops()
    asyncio.run(run(args.calls, args.kind, args.profile))


if __name__ == "__main__":
    main()
