"""bench/calls.py works (CI runs its short version: 2 calls per path; no speed asserted)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest
from pbx_harness import REPO

from callcontrol.config import Settings

pytestmark = pytest.mark.pbx


async def test_the_calls_benchmark_runs_every_path(pbx: Settings, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "bench" / "calls.py"),
        "--quick",
        "--paths",
        "plain,minimal,routed,minimal-ivr,ivr,answer,agi",
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("CALLCONTROL_", "BENCH_"))},
            "BENCH_WORKDIR": str(tmp_path),
        },
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    for path in ("plain", "minimal", "routed", "minimal-ivr", "ivr", "answer", "agi"):
        assert re.search(rf"\| 1 \| {path} \| 2/0 \|", text), text[-3000:]
    assert "open records 0, held 0 micro-credits, credits audit clean" in text
