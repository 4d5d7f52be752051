"""Worker 1 starts workers 2..N, restarts one that dies, stops them all with itself;
a worker stops when worker 1's pipe closes. Real child processes (a small script in
place of `callcontrol serve --worker K`)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
import sys
from pathlib import Path
from types import ModuleType

import pytest

from callcontrol import workers as workers_module
from callcontrol.workers import Workers

CONTRACT_FILE = Path(__file__).resolve().parents[1] / "pbx" / "log_contract.py"


def load_contract() -> ModuleType:
    """The PBX tests' log contract (tests/pbx/log_contract.py): the lines they await."""
    spec = importlib.util.spec_from_file_location("log_contract", CONTRACT_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


contract = load_contract()

# What a worker does about worker 1: watch its pipe, and stop when it closes.
CHILD = """
import asyncio
from callcontrol.workers import watch_parent

async def main():
    stopped = asyncio.Event()
    await watch_parent(stopped.set)
    await stopped.wait()
    print("worker stopped", flush=True)

asyncio.run(main())
"""


class ScriptWorkers(Workers):
    def argv(self, worker: int) -> list[str]:
        assert self.cli_args == ["--set=workers=3"]
        return [sys.executable, "-c", CHILD, str(worker)]


class Starts(logging.Handler):
    """The supervisor's log lines as events: (worker, pid) per start, exits."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[tuple[int, int]] = []
        self.exited: list[str] = []
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if record.msg.startswith("worker %d started"):
            self.started.append((int(record.args[0]), int(record.args[1])))  # type: ignore[index]
        elif "exited with" in record.msg:
            self.exited.append(record.getMessage())
        self.changed.set()

    async def wait(self, ready: object) -> None:
        async with asyncio.timeout(10):
            while not ready():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def starts() -> Starts:
    handler = Starts()
    logger = logging.getLogger(workers_module.__name__)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler  # type: ignore[misc]
    logger.removeHandler(handler)


async def test_workers_are_started_restarted_when_killed_and_stopped_with_worker_1(
    starts: Starts,
) -> None:
    supervisor = ScriptWorkers(3, ["--set=workers=3"])
    run = asyncio.create_task(supervisor.run())
    await starts.wait(lambda: len(starts.started) == 2)
    assert sorted(worker for worker, _ in starts.started) == [2, 3]
    first = dict(starts.started)

    os.kill(first[2], signal.SIGKILL)
    await starts.wait(lambda: len(starts.started) == 3)
    assert starts.exited == [
        f"worker 2 (pid {first[2]}) exited with signal 9: restarting it in 0.5 s"
    ]
    assert starts.started[2][0] == 2 and starts.started[2][1] != first[2]
    assert supervisor.procs[3].pid == first[3] and supervisor.procs[3].returncode is None

    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert all(proc.returncode is not None for proc in supervisor.procs.values())
    # the lines the PBX tests await (log_contract.py)
    found = [
        (name, m.groupdict())
        for line in starts.lines
        for name in ("WORKER_STARTED", "WORKER_EXITED", "WORKER_STOPPED")
        if (m := getattr(contract, name).search(line))
    ]
    assert found[:2] == [
        ("WORKER_STARTED", {"worker": "2", "pid": str(first[2])}),
        ("WORKER_STARTED", {"worker": "3", "pid": str(first[3])}),
    ]
    assert found[2] == (
        "WORKER_EXITED",
        {"worker": "2", "pid": str(first[2]), "how": "signal", "code": "9"},
    )
    assert found[3][0] == "WORKER_STARTED" and found[3][1]["worker"] == "2"
    assert sorted(f[1]["worker"] for f in found[4:]) == ["2", "3"]
    assert {f[0] for f in found[4:]} == {"WORKER_STOPPED"}


async def test_a_worker_stops_when_worker_1_is_gone() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdin is not None
    child.stdin.close()  # what the end of worker 1 (even a SIGKILL) does to the pipe
    async with asyncio.timeout(10):
        out, _ = await child.communicate()
    assert child.returncode == 0 and out == b"worker stopped\n"
