"""Several processes on one PBX (setting ``workers``): worker 1 starts and keeps the others.

    callcontrol serve                      worker 1: everything (app.py), and this
      +- callcontrol serve --worker 2      the call engine of Stasis app <ari_app>-2
      +- ...
      +- callcontrol serve --worker N      the call engine of Stasis app <ari_app>-N

The dialplan (``callcontrol pbx up``, pbx/workers.py) spreads new calls over the N
applications and passes a call on to the next one when its worker is not connected.
Each worker names its call records ``<pbx_node>/<K>`` and re-adopts only those, so a
worker that restarts finds its own calls and never touches another worker's.

``Workers.run`` starts workers 2..N with the same ``--config``/``--set`` arguments (the
environment is inherited), restarts one that exits (logged, with a back-off when it
keeps dying), and on cancellation stops them all with SIGTERM (they leave their calls
up for the next start, as ``serve`` does), SIGKILL after ``STOP_TIMEOUT``. A worker's
standard input is a pipe from worker 1: when it reads end-of-file (worker 1 is gone,
even killed), it stops too (``watch_parent``), so no worker outlives its supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0  # seconds a worker has to stop after SIGTERM
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # after the 1st, 2nd, ... quick death
STEADY_AFTER = 60.0  # a worker that ran this long starts again at the first delay


class Workers:
    """Workers 2..``count`` of one PBX, as child processes of this one."""

    def __init__(self, count: int, cli_args: Sequence[str]) -> None:
        self.count = count
        self.cli_args = list(cli_args)  # --config/--set, repeated for each worker
        self.procs: dict[int, asyncio.subprocess.Process] = {}

    def argv(self, worker: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "callcontrol",
            *self.cli_args,
            "serve",
            "--worker",
            str(worker),
        ]

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for worker in range(2, self.count + 1):
                    tg.create_task(self._keep(worker), name=f"worker-{worker}")
        finally:
            await asyncio.shield(self._stop_all())

    async def _keep(self, worker: int) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            # A session of its own: a terminal's Ctrl-C reaches worker 1 only, which then
            # stops the workers itself (not restarting them).
            proc = await asyncio.create_subprocess_exec(
                *self.argv(worker), stdin=asyncio.subprocess.PIPE, start_new_session=True
            )
            self.procs[worker] = proc
            log.info("worker %d started (pid %d)", worker, proc.pid)
            code = await proc.wait()
            failures = 0 if loop.time() - started >= STEADY_AFTER else failures + 1
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS)) - 1] if failures else 0.0
            log.error(
                "worker %d (pid %d) exited with %s: restarting it%s",
                worker,
                proc.pid,
                _exit_status(code),
                f" in {delay:g} s" if delay else "",
            )
            await asyncio.sleep(delay)

    async def _stop_all(self) -> None:
        running = [(k, p) for k, p in self.procs.items() if p.returncode is None]
        for _, proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for worker, proc in running:
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.error("worker %d did not stop in %g s: killing it", worker, STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            log.info("worker %d stopped", worker)


def _exit_status(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"status {code}"


async def watch_parent(stop: Callable[[], None]) -> None:
    """A worker's guard: call ``stop`` when standard input (worker 1's pipe) closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass
    log.warning("worker 1 is gone: stopping")
    stop()
