"""Calls per second through the app versus a plain dialplan on the same Asterisk.

    sudo .venv/bin/python bench/calls.py [--rates 10,25,50] [--seconds 10] [--talk 2]

Both paths ring the same sipp phone (alice, 1001), which answers at once and waits
for the BYE; the carrier (sipp) hangs up after ``--talk`` seconds:

    plain     carrier -> dialplan Dial(PJSIP/1001)                   (the PBX's own limit)
    app       carrier -> Stasis -> routing (one query) -> charging (rate, authorize,
              hold, TIMEOUT(absolute)) -> originate -> bridge -> settle at hangup

For each offered rate, both run ``rate x seconds`` calls; the table shows calls that
completed, failed, and the ratio app/plain of completed calls (target >= 0.9). Uses
the development PBX (``callcontrol pbx up``) and a throw-away SQLite database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from callcontrol.config import Settings, load_settings
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.pbx import sipp
from callcontrol.pbx.devpbx import DevPbx, ensure_ari_secret
from callcontrol.services import open_services
from callcontrol.store import migrate

REPO = Path(__file__).resolve().parents[1]
NUMBER = "+442079460000"
PLAIN = "*9991"  # reaches the baseline context written below
PHONE_PORT = 5091
BASELINE = "exten => *9991,1,Dial(PJSIP/1001,10)\n same => n,Hangup()\n"


async def seed(settings: Settings) -> None:
    await asyncio.to_thread(migrate.upgrade, settings.effective_database_url)
    async with open_services(settings) as services:
        directory = services.directory
        await directory.add_user("alice", "1001", "wonderland-7291")
        await directory.add_number(NUMBER)
        await directory.route_to_user(NUMBER, "alice")
        charging = services.charging
        await charging.import_rates(REPO / "rates" / "example_rates.csv")
        await charging.wallet.credit(10**5 * MICRO, LedgerKind.PURCHASE, "bench", "bench:c", "")


async def sipp_load(
    workdir: Path, name: str, service: str, rate: int, calls: int, talk_ms: int
) -> str:
    """Offer ``calls`` calls at ``rate`` per second; sipp's final statistics screen."""
    after = sipp.HANG_UP_AFTER.format(ms=talk_ms)
    xml = sipp.render(
        "carrier.xml", caller="+15550001111", final=sipp.CARRIER_ANSWERED.format(after_ack=after)
    )
    load = await sipp.run_sipp(
        workdir,
        name,
        xml,
        service=service,
        local_port=5190,
        calls=calls,
        rate=rate,
        trace_messages=False,
        timeout_s=calls // rate + talk_ms // 1000 + 60,
    )
    return (await load.wait(calls // rate + talk_ms // 1000 + 90)).screen


async def wait_for_line(path: Path, text: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in path.read_text(errors="replace"):
        if loop.time() > deadline:
            raise SystemExit(f"the app did not log {text!r}; see {path}")
        await asyncio.sleep(0.1)


def counts(screen: str) -> tuple[int, int]:
    ok = re.findall(r"Successful call\s+\|\s+\d+\s+\|\s+(\d+)", screen)
    failed = re.findall(r"Failed call\s+\|\s+\d+\s+\|\s+(\d+)", screen)
    return (int(ok[-1]) if ok else 0), (int(failed[-1]) if failed else 0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="10,25,50")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--talk", type=int, default=2)
    args = parser.parse_args()
    base = load_settings(environ={}, overrides={"data_dir": str(REPO / "var")})
    settings = load_settings(
        environ={},
        overrides={"data_dir": str(REPO / "var"), "ari_password": ensure_ari_secret(base)},
    )
    pbx = DevPbx(settings)
    pbx.up()
    local = pbx.etc / "extensions_local.conf"
    local.write_text(BASELINE)
    pbx.cli("dialplan reload")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(os.environ.get("BENCH_WORKDIR") or tmp)
        work.mkdir(parents=True, exist_ok=True)
        url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
        await seed(settings.model_copy(update={"database_url": url}))
        env = {
            **os.environ,
            "CALLCONTROL_DATA_DIR": str(work),
            "CALLCONTROL_DATABASE_URL": url,
            "CALLCONTROL_ARI_PASSWORD": settings.ari_password,
            "CALLCONTROL_LOG_LEVEL": "INFO",
            "CALLCONTROL_MEDIA_LISTEN": "127.0.0.1:8097",
        }
        app = subprocess.Popen(
            [sys.executable, "-m", "callcontrol", "serve"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "app.log", "w"),
        )
        try:
            await wait_for_line(work / "app.log", "provisioned")  # alice's endpoint exists
            reg = await sipp.run_sipp(
                work,
                "register",
                sipp.render("register.xml", expires=600, contact_port=PHONE_PORT),
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
            )
            for rate in (int(r) for r in args.rates.split(",")):
                calls = rate * args.seconds
                plain = counts(
                    await sipp_load(work, f"plain-{rate}", PLAIN, rate, calls, args.talk * 1000)
                )
                via_app = counts(
                    await sipp_load(work, f"app-{rate}", NUMBER, rate, calls, args.talk * 1000)
                )
                rows.append((rate, calls, plain, via_app))
                print(f"rate {rate}/s: plain {plain}, app {via_app}", flush=True)
            phone.kill()
        finally:
            app.terminate()
            app.wait(15)
            local.unlink(missing_ok=True)
            pbx.cli("dialplan reload")
    print(f"\n{args.talk} s calls, {args.seconds} s of load per rate (completed / failed)")
    print(f"{'offered/s':>10}{'calls':>8}{'plain':>14}{'app':>14}{'ratio':>8}")
    for rate, calls, (p_ok, p_fail), (a_ok, a_fail) in rows:
        ratio = a_ok / p_ok if p_ok else float("nan")
        print(f"{rate:>10}{calls:>8}{f'{p_ok}/{p_fail}':>14}{f'{a_ok}/{a_fail}':>14}{ratio:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
