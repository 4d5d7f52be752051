"""Hot reload: edits, invalid edits, added and removed files, versions kept by calls."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from callcontrol.ivr.model import Flow, Menu, Sound
from callcontrol.ivr.registry import FlowRegistry

FLOW = """\
start: main
menus:
  main:
    prompts: [{prompt}]
    options:
      1: {{ring: alice}}
    on_failure: hangup
"""


def write(directory: Path, name: str, prompt: str = "hello", text: str | None = None) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text if text is not None else FLOW.format(prompt=prompt))
    return path


def first_prompt(flow: Flow | None) -> str:
    assert flow is not None
    menu = flow.nodes["main"]
    assert isinstance(menu, Menu) and isinstance(menu.prompts[0], Sound)
    return menu.prompts[0].name


def test_load_and_edit_serves_the_new_version(tmp_path: Path) -> None:
    write(tmp_path, "main")
    changes: list[tuple[str, str | None]] = []
    registry = FlowRegistry(
        tmp_path,
        on_change=lambda name, flow: changes.append((name, flow.version if flow else None)),
    )
    assert registry.load() == []
    old = registry.get("main")
    old_version = registry.version("main")
    assert first_prompt(old) == "hello" and old_version

    write(tmp_path, "main", "goodbye")
    assert registry.poll() is True
    new = registry.get("main")
    assert first_prompt(new) == "goodbye"
    assert registry.version("main") != old_version
    # the call that got the old version still has it, unchanged
    assert first_prompt(old) == "hello" and old is not new
    assert old is not None and old.version == old_version
    assert changes == [("main", old_version), ("main", registry.version("main"))]
    assert registry.poll() is False  # nothing changed since


def test_invalid_edit_keeps_the_last_good_version_and_logs_positions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "main")
    registry = FlowRegistry(tmp_path, known_users={"alice"})
    registry.load()
    good = registry.get("main")
    path.write_text(FLOW.format(prompt="hello").replace("ring: alice", "ring: mallory") + "x: 1\n")
    with caplog.at_level(logging.ERROR, logger="callcontrol.ivr.registry"):
        assert registry.poll() is False
    assert registry.get("main") is good
    text = caplog.text
    assert "ivr flow main refused (2 errors; version" in text and "keeps serving" in text
    assert f"{path}:6:17: unknown user 'mallory'" in text
    assert f"{path}:8:1: unknown key 'x' in the flow" in text
    assert [e.line for e in registry.errors()] == [6, 8]
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="callcontrol.ivr.registry"):
        registry.poll()  # the same bad content is not logged again
    assert caplog.text == ""
    write(tmp_path, "main", "fixed")
    assert registry.poll() is True
    assert first_prompt(registry.get("main")) == "fixed" and registry.errors() == []


def test_add_and_remove_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(
        tmp_path,
        "main",
        text=FLOW.format(prompt="hello").replace("on_failure: hangup", "on_failure: {flow: extra}"),
    )
    registry = FlowRegistry(tmp_path)
    errors = registry.load()
    assert registry.get("main") is None  # refers to a flow that does not exist yet
    assert [e.message for e in errors] == ["unknown flow 'extra'"]

    write(tmp_path, "extra")
    registry.poll()
    # main did not change, but the flow it names now exists: it is validated again
    assert registry.names() == ["extra", "main"]

    removed: list[str] = []
    registry.add_listener(lambda name, flow: removed.append(name) if flow is None else None)
    (tmp_path / "extra.yaml").unlink()
    with caplog.at_level(logging.WARNING, logger="callcontrol.ivr.registry"):
        assert registry.poll() is True
    assert registry.get("extra") is None and removed == ["extra"]
    assert (
        "ivr flow extra removed (its file is gone); flows still jumping to it: main" in caplog.text
    )


def test_refused_file_is_retried_when_the_users_change(tmp_path: Path) -> None:
    write(tmp_path, "main")
    users: set[str] = set()
    registry = FlowRegistry(tmp_path, known_users=lambda: users)
    registry.load()
    assert registry.get("main") is None
    users.add("alice")
    registry.poll()
    assert registry.get("main") is not None


async def test_run_polls_until_cancelled(tmp_path: Path) -> None:
    write(tmp_path, "main")
    changed = asyncio.Event()
    registry = FlowRegistry(
        tmp_path, poll_interval=0.01, on_change=lambda name, flow: changed.set()
    )
    registry.load()
    changed.clear()
    task = asyncio.create_task(registry.run())
    write(tmp_path, "main", "edited")
    await asyncio.wait_for(changed.wait(), 5)
    assert first_prompt(registry.get("main")) == "edited"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_failing_listener_does_not_stop_reloads(tmp_path: Path) -> None:
    write(tmp_path, "main")

    def boom(name: str, flow: Flow | None) -> None:
        raise RuntimeError("listener bug")

    registry = FlowRegistry(tmp_path, on_change=boom)
    registry.load()
    assert registry.get("main") is not None
