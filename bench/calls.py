"""Calls per second on one PBX and one phone: plain Dial(), a minimal ARI app, callcontrol.

    sudo flock /tmp/callcontrol-pbx.lock .venv/bin/python bench/calls.py \
        [--rates 10,20,40] [--seconds 10] [--talk 2]
        [--paths plain,minimal,routed,minimal-ivr,ivr,answer,agi]
        [--workers N]

One registered sipp phone answers as user 1001 (alice); a sipp carrier offers
``rate x seconds`` calls per step that hang up ``--talk`` seconds after the answer.
For each offered rate the paths run one after the other (interleaved, so they see
the same machine):

    plain     carrier -> Dial(PJSIP/1001) in the dialplan          (the PBX's own limit)
    minimal   carrier -> Stasis -> bench/minimal_ari.py: originate, answer, bridge
              (no database: the floor for any ARI design)
    minimal-ivr  the same app as an IVR: answer, prompt, the caller presses 1,
              originate with a ringing tone, bridge (the floor for the ivr path)
    routed    carrier -> callcontrol: a number routed to alice (routing, charging,
              originate, bridge, settlement)
    ivr       carrier -> callcontrol: a number routed to a flow; the caller presses 1,
              the flow rings alice
    answer    carrier -> Stasis -> the minimal app answers, nothing else (the caller
              hangs up): the yardstick of issue 12's CPU target (3 ms a routed call
              where an app that answered and hung up took 1.6 ms), so that the target
              reads as a ratio on any machine; one request fewer than the issue's app
    agi       carrier -> the dialplan-driven deployment (``callcontrol agi``, the
              development dialplan's ``*88<number>``): FastAGI authorize, Dial() to
              alice, settle from the hangup handler; no app in the call

Not in the default ``--paths``: answer and agi (name them).

A call counts as completed only when sipp saw it succeed AND the app agrees: for
callcontrol, its call record (matched by the caller number, unique per call) is
answered, connected to alice, ended and settled (agi: the same); for the minimal app,
it logged the bridge (on the answer path, the answer). Per step: completed/failed,
INVITE->200 p50/p99 (sipp's per-call response times), CPU ms per offered call of
Asterisk and of the app (from /proc: far less sensitive to other load than
throughput; what each process burns idle, measured for 3 s first, is subtracted),
the app's event-loop lag (its peak over the step). Then the highest rate each path
sustains (< 1% failures and INVITE->200 p99 <= 500 ms: callers waiting seconds for the
answer are not a sustained rate), the ratios (with the answer path: a routed call's
app CPU against it), and after the run: open records, held credits, ``credits audit``.

The PBX is restarted first (after writing the plain path's dialplan), so that every
run measures the same Asterisk: each ``dialplan reload`` leaves Asterisk 22 one more
subscriber that handles every AMI event of every later call, and a PBX that tests or
earlier runs reloaded dozens of times spends two to three times the CPU on a call.
``--keep-pbx`` measures the running one as it is (the header says how many reloads
it carries: ``DevPbx.reloads``); ``--quick`` never restarts.

``--workers N``: callcontrol runs as N processes on the PBX (setting ``workers``; the
dialplan is written for them and put back to one app afterwards); its CPU is the sum
of the N processes'.

``--quick``: 2 calls per path at 1/s (CI proves the benchmark works; it asserts no
speed). ``BENCH_WORKDIR=dir`` keeps sipp's files and the apps' logs;
``BENCH_APP_PYTHONPATH=dir`` runs the callcontrol app from another checkout (a
"before" table); ``BENCH_APP_PROFILE=file`` runs it under cProfile (stats written
to the file when it stops).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import text

from callcontrol.config import Settings, load_settings
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.pbx import sipp
from callcontrol.pbx.devpbx import DevPbx, ensure_ari_secret
from callcontrol.pbx.dtmf import Dtmf, Pause, carrier_dtmf_scenario
from callcontrol.services import open_services
from callcontrol.store import migrate

REPO = Path(__file__).resolve().parents[1]
ROUTED = "+442079460000"
FLOW_NUMBER = "+442079460002"
# the benchmark's dialplan, below
PLAIN, MINIMAL, MINIMAL_IVR, ANSWER = "*9991", "*9992", "*9993", "*9994"
AGI_ROUTED = "*88" + ROUTED  # the development dialplan's [callcontrol-agi-carrier]
DIALPLAN = (
    "exten => *9991,1,Dial(PJSIP/1001,10)\n same => n,Hangup()\n"
    "exten => *9992,1,Stasis(benchmin,in)\n same => n,Hangup()\n"
    "exten => *9993,1,Stasis(benchmin,ivr)\n same => n,Hangup()\n"
    "exten => *9994,1,Stasis(benchmin,answer)\n same => n,Hangup()\n"
)
FLOW = """\
start: main
menus:
  main:
    prompts: [beep]
    options:
      "1": { ring: alice }
    timeout: 10
    on_failure: hangup
"""
PHONE_PORT = 5091
IDLE_SECONDS = 3.0  # measuring what the processes burn without calls
MAX_P99_MS = 500.0  # a rate whose callers wait longer for the answer is not sustained
# Issue 12's CPU target for a routed call, 3 ms, on a machine where an ARI app that only
# answered and hung up took 1.6 ms: as a ratio it holds on any machine.
YARDSTICK_RATIO = 3.0 / 1.6


@dataclass(frozen=True)
class Route:
    """What a path's calls dial, which process serves them (its CPU and its record of
    the call), and whether the caller presses 1 after a prompt."""

    service: str
    owner: str | None  # "app" (callcontrol), "agi" (callcontrol agi), "minimal", or None
    keys: bool = False


PATHS = {
    "plain": Route(PLAIN, None),
    "minimal": Route(MINIMAL, "minimal"),
    "routed": Route(ROUTED, "app"),
    "minimal-ivr": Route(MINIMAL_IVR, "minimal", keys=True),
    "ivr": Route(FLOW_NUMBER, "app", keys=True),
    "answer": Route(ANSWER, "minimal"),
    "agi": Route(AGI_ROUTED, "agi"),
}
DEFAULT_PATHS = ("plain", "minimal", "routed", "minimal-ivr", "ivr")


@dataclass
class Step:
    path: str
    rate: int
    offered: int
    completed: int = 0
    sipp_ok: int = 0
    rtt_ms: list[float] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # process -> ms per offered call
    lag_ms: float | None = None

    @property
    def failed(self) -> int:
        return self.offered - self.completed

    def pct(self, q: float) -> str:
        if not self.rtt_ms:
            return "-"
        ordered = sorted(self.rtt_ms)
        return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.0f}"


# ---- processes and their CPU ------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes (clock ticks from /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def with_children(pid: int) -> list[int]:
    """The process and its children (callcontrol's workers 2..N), as they are now."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return pids


def asterisk_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "asterisk":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


async def wait_for_line(path: Path, pattern: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not re.search(pattern, path.read_text(errors="replace")):
        if loop.time() > deadline:
            raise SystemExit(f"no line matching {pattern!r} within {timeout:.0f} s; see {path}")
        await asyncio.sleep(0.1)


# ---- sipp -------------------------------------------------------------------------------


def instrument(xml: str) -> str:
    """Per-call INVITE->200 times (RTD 1) and a log line for every successful call."""
    xml = xml.replace('<send retrans="500">', '<send retrans="500" start_rtd="1">', 1)
    xml = xml.replace(
        '<recv response="200" rrs="true"/>', '<recv response="200" rrs="true" rtd="1"/>'
    )
    ok = '  <nop><action><log message="ok [call_number]"/></action></nop>\n</scenario>'
    return xml.replace("</scenario>", ok)


async def offer(work: Path, step: Step, route: Route, prefix: str, talk_ms: int) -> None:
    """One step of load; fills ``sipp_ok`` and ``rtt_ms``; returns the successful numbers."""
    caller = prefix + "[call_number]"
    if route.keys:
        xml = carrier_dtmf_scenario(
            caller, [Pause(400), Dtmf("1"), Pause(talk_ms)], workdir=work, end="hangup"
        )
    else:
        after = sipp.HANG_UP_AFTER.format(ms=talk_ms)
        xml = sipp.render(
            "carrier.xml", caller=caller, final=sipp.CARRIER_ANSWERED.format(after_ack=after)
        )
    (work / "carrier.xml").write_text(instrument(xml))
    argv = [
        "sipp", "-sf", str(work / "carrier.xml"), "-i", "127.0.0.1", "-p", "5190",
        "-s", route.service, "-r", str(step.rate), "-l", str(step.rate * 20),
        "-m", str(step.offered),
        "-timeout", f"{step.offered // step.rate + talk_ms // 1000 + 60}s", "-nostdin",
        "-trace_logs", "-trace_rtt", "-rtt_freq", "1", "-trace_err",
        "-mp", "31000", "127.0.0.1:5060",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=work, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    await proc.wait()


def sipp_results(work: Path, prefix: str) -> tuple[set[str], list[float]]:
    ok = {
        prefix + m
        for log in work.glob("carrier_*_logs.log")
        for m in re.findall(r"^ok (\d+)", log.read_text(), re.M)
    }
    rtt = [
        float(line.split(";")[1])
        for csv in work.glob("carrier_*_rtt.csv")
        for line in csv.read_text().splitlines()[1:]
        if line.count(";") >= 2
    ]
    return ok, rtt


# ---- what the apps say -----------------------------------------------------------------


async def settled_callers(settings: Settings, prefix: str, offered: int) -> set[str]:
    """Callers whose record is answered, connected to alice, ended and settled; waits
    (up to 20 s) until no record of the step is open."""
    async with open_services(settings) as services:
        deadline = time.monotonic() + 20
        while True:
            async with services.db.session() as session:
                rows = (
                    await session.execute(
                        text(
                            "SELECT caller, ended_at IS NULL, disposition, charge_state, "
                            "user_name, answered_at IS NOT NULL FROM call_records "
                            "WHERE caller LIKE :p"
                        ),
                        {"p": prefix + "%"},
                    )
                ).all()
            if all(not row[1] for row in rows) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    return {
        row[0]
        for row in rows
        if not row[1]
        and row[2] == "answered"
        and row[3] == "settled"
        and row[4] == "alice"
        and row[5]
    }


def app_lag(log: Path, since: float, until: float) -> float | None:
    """The highest loop-lag peak the app logged between two times."""
    peaks = []
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"(\S+ \S+) .*load: .*peak ([\d.]+) ms", line)
        if m:
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if since <= at <= until + 5:
                peaks.append(float(m.group(2)))
    return max(peaks) if peaks else None


def minimal_lag(log: Path, since: float, until: float) -> float | None:
    peaks = [
        float(ms)
        for second, ms in (line.split() for line in log.read_text().splitlines() if line)
        if since <= int(second) <= until
    ]
    return max(peaks) if peaks else None


async def audit(settings: Settings) -> str:
    async with open_services(settings) as services:
        problems = await services.charging.wallet.audit()
        held = (await services.charging.wallet.balance()).held
        open_records = len(await services.store.open_records())
    verdict = problems if problems else "clean"
    return f"open records {open_records}, held {held} micro-credits, credits audit {verdict}"


# ---- the run ----------------------------------------------------------------------------


async def seed(settings: Settings, flows: Path) -> None:
    await asyncio.to_thread(migrate.upgrade, settings.effective_database_url)
    flows.mkdir(parents=True, exist_ok=True)
    (flows / "bench.yaml").write_text(FLOW)
    async with open_services(settings) as services:
        directory = services.directory
        await directory.add_user("alice", "1001", "wonderland-7291")
        await directory.add_number(ROUTED)
        await directory.route_to_user(ROUTED, "alice")
        await directory.add_number(FLOW_NUMBER)
        await directory.route_to_flow(FLOW_NUMBER, "bench")
        charging = services.charging
        await charging.import_rates(REPO / "rates" / "example_rates.csv")
        await charging.wallet.credit(10**6 * MICRO, LedgerKind.PURCHASE, "bench", "bench:c", "")


def table(steps: list[Step], talk: int, seconds: int) -> str:
    lines = [
        f"{talk} s calls, {seconds} s per step; CPU in ms per offered call; lag: the app's "
        "event-loop peak (ms)",
        "",
        "| offered/s | path | completed/failed | INVITE->200 p50/p99 ms | Asterisk CPU "
        "| app CPU | loop lag |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for s in steps:
        lag = "-" if s.lag_ms is None else f"{s.lag_ms:.0f}"
        app = s.cpu_ms.get("app")
        lines.append(
            f"| {s.rate} | {s.path} | {s.completed}/{s.failed} | {s.pct(0.5)}/{s.pct(0.99)} | "
            f"{s.cpu_ms['asterisk']:.1f} | {'-' if app is None else f'{app:.1f}'} | {lag} |"
        )
    best: dict[str, int] = {}
    for s in steps:
        p99 = float(s.pct(0.99)) if s.rtt_ms else 0.0
        if s.failed <= 0.01 * s.offered and p99 <= MAX_P99_MS:
            best[s.path] = max(best.get(s.path, 0), s.rate)
    lines += [
        "",
        f"sustained: the highest rate offered with < 1% failures and INVITE->200 p99 <= "
        f"{MAX_P99_MS:.0f} ms",
    ]
    for path in dict.fromkeys(s.path for s in steps):
        lines.append(f"  {path}: {best.get(path, 0)}/s")
    floor = best.get("minimal") or 0
    for path in ("routed", "ivr"):
        if path in best and floor:
            lines.append(f"  {path} / minimal: {best[path] / floor:.2f}")
    if best.get("ivr") and best.get("minimal-ivr"):
        lines.append(f"  ivr / minimal-ivr: {best['ivr'] / best['minimal-ivr']:.2f}")
    if best.get("plain") and floor:
        lines.append(f"  minimal / plain: {floor / best['plain']:.2f}")
    # CPU per offered call reads low where calls failed: only steps routed carried.
    carried = {(s.rate, s.path): s.cpu_ms.get("app") for s in steps if s.failed <= 0.01 * s.offered}
    yardsticks = [
        (rate, cpu, carried.get((rate, "routed")))
        for (rate, path), cpu in carried.items()
        if path == "answer" and cpu
    ]
    if any(routed for _, _, routed in yardsticks):
        lines += [
            "",
            "app CPU of a routed call against the answer-only app's, where both carried "
            "their calls (the issue's target, 3 ms against 1.6 for answer and hang-up, is "
            f"{YARDSTICK_RATIO:.2f}x):",
        ]
        for rate, answer, routed in yardsticks:
            if routed:
                lines.append(f"  {rate}/s: {routed:.1f} / {answer:.1f} ms = {routed / answer:.2f}x")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="10,20,40")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--talk", type=int, default=2)
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS))
    parser.add_argument("--quick", action="store_true", help="2 calls per path (CI)")
    parser.add_argument("--workers", type=int, default=1, help="callcontrol processes")
    parser.add_argument(
        "--keep-pbx", action="store_true", help="do not restart the PBX first (--quick never does)"
    )
    args = parser.parse_args()
    rates = [1] if args.quick else [int(r) for r in args.rates.split(",")]
    seconds = 2 if args.quick else args.seconds
    paths = [p for p in args.paths.split(",") if p]
    if unknown := set(paths) - set(PATHS):
        raise SystemExit(f"unknown paths {sorted(unknown)}: choose from {', '.join(PATHS)}")
    base = load_settings(environ={}, overrides={"data_dir": str(REPO / "var")})
    pbx_settings = load_settings(
        environ={},
        overrides={"data_dir": str(REPO / "var"), "ari_password": ensure_ari_secret(base)},
    )
    pbx = DevPbx(pbx_settings.model_copy(update={"workers": args.workers}))
    pbx.up()
    local = pbx.etc / "extensions_local.conf"
    local.write_text(DIALPLAN)
    if args.quick or args.keep_pbx:
        pbx.cli("dialplan reload")
        fresh = f"kept running ({pbx.reloads()} dialplan reloads since its start)"
    else:
        pbx.down()  # every dialplan reload slows every later call: measure a fresh one
        pbx.up()
        fresh = "started fresh for the run"
    steps: list[Step] = []
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(os.environ.get("BENCH_WORKDIR") or tmp)
        work.mkdir(parents=True, exist_ok=True)
        url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
        settings = pbx_settings.model_copy(
            update={"database_url": url, "flows_dir": work / "flows"}
        )
        await seed(settings, work / "flows")
        env = {
            **os.environ,
            "CALLCONTROL_DATA_DIR": str(work),
            "CALLCONTROL_DATABASE_URL": url,
            "CALLCONTROL_ARI_PASSWORD": pbx_settings.effective_ari_password,
            "CALLCONTROL_FLOWS_DIR": str(work / "flows"),
            "CALLCONTROL_MEDIA_LISTEN": "127.0.0.1:8097",
            "CALLCONTROL_WORKERS": str(args.workers),
        }
        if os.environ.get("BENCH_APP_PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["BENCH_APP_PYTHONPATH"]
        app_log = work / "app.log"
        try:
            profile = os.environ.get("BENCH_APP_PROFILE")
            profiler = ["-m", "cProfile", "-o", profile] if profile else []
            app = subprocess.Popen(
                [sys.executable, *profiler, "-m", "callcontrol", "serve"],
                env=env,
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=app_log.open("w"),
            )
            procs.append(app)
            agi_log = work / "agi.log"
            agi = None
            if "agi" in paths:  # its port is the development dialplan's (agi_listen)
                agi = subprocess.Popen(
                    [sys.executable, "-m", "callcontrol", "agi"],
                    env=env,
                    cwd=work,
                    stdout=subprocess.DEVNULL,
                    stderr=agi_log.open("w"),
                )
                procs.append(agi)
            minimal_dir = work / "minimal"
            minimal_dir.mkdir(exist_ok=True)
            minimal = subprocess.Popen(
                [sys.executable, str(REPO / "bench" / "minimal_ari.py"), pbx_settings.ari_url,
                 pbx_settings.ari_username, pbx_settings.effective_ari_password, "PJSIP/1001",
                 str(minimal_dir)],
                stdout=(minimal_dir / "out.log").open("w"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            procs.append(minimal)
            await wait_for_line(app_log, "provisioned")  # alice's endpoint exists
            if args.workers > 1:
                await wait_for_line(app_log, f"as app 'callcontrol-{args.workers}'")
            await wait_for_line(minimal_dir / "out.log", "connected")
            if agi is not None:
                await wait_for_line(agi_log, "FastAGI server listening")
            reg = await sipp.run_sipp(
                work,
                "register",
                sipp.render("register.xml", expires=3600, contact_port=PHONE_PORT),
                service="1001",
                auth=("1001", "wonderland-7291"),
                local_port=PHONE_PORT,
            )
            if not (await reg.wait(15)).ok:
                raise SystemExit("alice's phone could not register")
            phone = await sipp.run_sipp(
                work,
                "phone",
                sipp.render(
                    "phone_answer.xml", ring_ms=0, after_ack=sipp.WAIT_FOR_BYE.format(ms=120000)
                ),
                server=True,
                local_port=PHONE_PORT,
                calls=0,
                timeout_s=3600,
                trace_messages=False,
            )
            load = os.getloadavg()
            started = datetime.now()
            pids = {
                "asterisk": asterisk_pids(),
                "app": with_children(app.pid),
                "minimal": [minimal.pid],
                "agi": [] if agi is None else [agi.pid],
            }
            # What each process burns without calls (timers, polls), subtracted per step.
            idle0, t0 = {k: cpu_seconds(v) for k, v in pids.items()}, time.monotonic()
            await asyncio.sleep(IDLE_SECONDS)
            idle_s = time.monotonic() - t0
            idle = {k: (cpu_seconds(v) - idle0[k]) / idle_s for k, v in pids.items()}
            for n, rate in enumerate(rates):
                for i, path in enumerate(paths):
                    step = Step(path, rate, rate * seconds)
                    step_dir = work / f"{rate}-{path}"
                    step_dir.mkdir(exist_ok=True)
                    prefix = f"+1555{n:02d}{i}"
                    route = PATHS[path]
                    before = {k: cpu_seconds(v) for k, v in pids.items()}
                    since, began = time.time(), time.monotonic()
                    await offer(step_dir, step, route, prefix, args.talk * 1000)
                    sipp_ok, step.rtt_ms = sipp_results(step_dir, prefix)
                    step.sipp_ok = len(sipp_ok)
                    if route.owner in ("app", "agi"):
                        good = sipp_ok & await settled_callers(settings, prefix, step.offered)
                        if route.owner == "app":
                            step.lag_ms = app_lag(app_log, since, time.time())
                    elif route.owner == "minimal":
                        bridged = set((minimal_dir / "bridged.log").read_text().split())
                        good = sipp_ok & bridged
                        step.lag_ms = minimal_lag(minimal_dir / "lag.log", since, time.time())
                    else:
                        good = sipp_ok
                    step.completed = len(good)
                    after = {k: cpu_seconds(v) for k, v in pids.items()}
                    took = time.monotonic() - began
                    for process, key in (("asterisk", "asterisk"), (route.owner, "app")):
                        if process:
                            used = after[process] - before[process] - idle[process] * took
                            step.cpu_ms[key] = used * 1e3 / step.offered
                    steps.append(step)
                    print(
                        f"{rate}/s {path}: {step.completed}/{step.failed} "
                        f"(sipp ok {step.sipp_ok}), p50/p99 {step.pct(0.5)}/{step.pct(0.99)} ms, "
                        f"CPU {json.dumps({k: round(v, 1) for k, v in step.cpu_ms.items()})}",
                        flush=True,
                    )
            phone.kill()
            final = await audit(settings)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(15)
            local.unlink(missing_ok=True)
            if args.workers > 1:
                DevPbx(pbx_settings).up()  # one app again
            pbx.cli("dialplan reload")
    print()
    print(f"{started:%Y-%m-%d %H:%M}, {os.uname().nodename}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start; "
          f"Asterisk {fresh}")  # fmt: skip
    print(table(steps, args.talk, seconds))
    print(f"after the run: {final}")


if __name__ == "__main__":
    asyncio.run(main())
