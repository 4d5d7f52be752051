"""Hot reload: edits, invalid edits, added and removed files, versions kept by calls."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from callcontrol.ivr import loader, validate
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


# ---- hardening: no file stops the registry or stalls the event loop ---------------------


def big_flow(menus: int) -> str:
    """``menus`` menus (the limit is 1000), 470 bytes and 78 YAML values each."""
    names = [f"m{i}" for i in range(menus)] + ["hangup"]
    parts = ["start: m0\nmenus:\n"]
    for i in range(menus):
        parts.append(f"  m{i}:\n    prompts: [hello, goodbye, {{say: Welcome to menu {i}}}]\n")
        parts.append("    options:\n")
        parts.extend(
            f"      {key}: {{ring: alice, fallback: {{play: [hello, goodbye], "
            f"then: {names[(i + key) % menus]}}}}}\n"
            for key in range(1, 6)
        )
        parts.append(f"    on_failure: {{play: [hello], then: {names[i + 1]}}}\n")
    return "".join(parts)


def deep_flow(levels: int) -> str:
    nested = "{play: [vm-goodbye], then: " * levels + "hangup" + "}" * levels
    return FLOW.format(prompt="hello").replace("on_failure: hangup", f"on_failure: {nested}")


async def test_a_too_deep_file_is_refused_at_start_and_on_reload(tmp_path: Path) -> None:
    # 400 levels raised RecursionError out of load() and run(): the whole app exited
    write(tmp_path, "main")
    write(tmp_path, "deep", text=deep_flow(400))
    registry = FlowRegistry(tmp_path)
    (error,) = registry.load()
    assert error.file == str(tmp_path / "deep.yaml") and error.line == 7
    assert error.message.startswith("nested too deeply: more than 32 levels")
    assert registry.names() == ["main"]
    good = registry.get("main")
    write(tmp_path, "main", text=deep_flow(400))
    assert await registry.reload() is False
    assert registry.get("main") is good
    assert [e.file for e in registry.errors()] == [
        str(tmp_path / f"{n}.yaml") for n in ("deep", "main")
    ]


async def test_run_goes_on_after_any_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = FlowRegistry(tmp_path, poll_interval=0)
    calls = 0
    again = asyncio.Event()

    async def reload() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RecursionError("maximum recursion depth exceeded")
        again.set()
        return False

    registry.reload = reload  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="callcontrol.ivr.registry"):
        task = asyncio.create_task(registry.run())
        await asyncio.wait_for(again.wait(), 5)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "reload failed; the flows served are unchanged" in caplog.text


def test_a_file_that_breaks_the_checks_is_refused_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "good")
    write(tmp_path, "bad")
    real = validate.check_flow

    def check_flow(flow: Flow, *args: Any, **kwargs: Any) -> None:
        if flow.name == "bad":
            raise ValueError("a bug")
        real(flow, *args, **kwargs)

    monkeypatch.setattr(validate, "check_flow", check_flow)
    registry = FlowRegistry(tmp_path)
    assert [str(e) for e in registry.load()] == [
        f"{tmp_path / 'bad.yaml'}:1:1: the flow could not be checked (ValueError: a bug)"
    ]
    assert registry.names() == ["good"]


async def test_a_file_closing_a_loop_across_flows_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    to_b = FLOW.format(prompt="hello").replace("on_failure: hangup", "on_failure: {flow: b}")
    write(tmp_path, "a", text=to_b)
    write(tmp_path, "b")
    registry = FlowRegistry(tmp_path)
    assert registry.load() == []
    old_b = registry.get("b")
    to_a = FLOW.format(prompt="hi").replace("on_failure: hangup", "on_failure: {flow: a}")
    write(tmp_path, "b", text=to_a)
    with caplog.at_level(logging.ERROR, logger="callcontrol.ivr.registry"):
        assert await registry.reload() is False
    assert registry.get("b") is old_b and registry.get("a") is not None
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert [str(e) for e in registry.errors()] == [
        f"{b}:7:24: loop with no bound across flows: b -> a -> b goes round without any key "
        f"press (flow: a here, flow: b at {a}:7:24); a silent caller would never leave it - "
        "end one of them with hangup or a play"
    ]
    assert "ivr flow b refused (1 errors; version" in caplog.text
    write(tmp_path, "a")  # a no longer leads to b: b's edit is taken at the next look
    assert await registry.reload() is True
    assert await registry.reload() is True
    assert first_prompt(registry.get("b")) == "hi" and registry.errors() == []


async def test_reloading_a_big_flow_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    write(tmp_path, "main")
    changed = asyncio.Event()
    registry = FlowRegistry(
        tmp_path,
        poll_interval=0.01,
        known_users={"alice"},
        on_change=lambda name, flow: changed.set() if name == "big" else None,
    )
    registry.load()
    worst = 0.0

    async def ticker() -> None:  # another coroutine, such as a live call's
        nonlocal worst
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            worst = max(worst, loop.time() - before - 0.005)

    ticking = asyncio.create_task(ticker())
    polling = asyncio.create_task(registry.run())
    text = big_flow(1000)
    assert 0.8 * loader.MAX_FILE_BYTES < len(text) < loader.MAX_FILE_BYTES
    write(tmp_path, "big", text=text)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(changed.wait(), 60)
    took = asyncio.get_running_loop().time() - started
    for task in (ticking, polling):
        task.cancel()
    big = registry.get("big")
    assert big is not None and len(big.nodes) == 1000
    assert took > 0.1  # the load took long enough for a stall to show
    assert worst < 0.1, f"the event loop stalled {worst * 1000:.0f} ms (load took {took:.2f} s)"
