"""The event loop of the long-running commands (setting ``event_loop``)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest
import uvloop

from callcontrol.cli.common import run_server
from callcontrol.config import Settings


async def _loop_type() -> type:
    await asyncio.sleep(0)  # it runs: the loop serves a task's steps
    return type(asyncio.get_running_loop())


def test_uvloop_by_default(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).event_loop == "uvloop"
    assert run_server(Settings(data_dir=tmp_path), _loop_type) is uvloop.Loop


def test_asyncio_when_asked(tmp_path: Path) -> None:
    loop_type = run_server(Settings(data_dir=tmp_path, event_loop="asyncio"), _loop_type)
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.BaseEventLoop)


def test_without_uvloop_falls_back_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    with caplog.at_level(logging.WARNING, logger="callcontrol.cli.common"):
        loop_type = run_server(Settings(data_dir=tmp_path), _loop_type)
    assert not issubclass(loop_type, uvloop.Loop)
    assert "uvloop is not installed" in caplog.text


def test_the_result_and_errors_of_main_come_back(tmp_path: Path) -> None:
    async def fails() -> None:
        raise LookupError("from the loop")

    with pytest.raises(LookupError, match="from the loop"):
        run_server(Settings(data_dir=tmp_path), fails)
