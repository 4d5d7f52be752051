"""Limits of flow files: refused with a position, in bounded time, never a crash or a hang."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import MappingProxyType

import pytest

from callcontrol.ivr import loader
from callcontrol.ivr.errors import FlowError, FlowValidationError
from callcontrol.ivr.loader import load_directory, load_flow
from callcontrol.ivr.model import Flow, GotoMenu, Hangup, Menu, Node, Play, Pos, Sound
from callcontrol.ivr.validate import check_flow
from callcontrol.ivr.yamlnodes import MAX_SUGGESTIONS, NodeReader

HEAD = "start: main\nmenus:\n  main:\n    prompts: [hello]\n    options:\n      1: hangup\n"


def deep_flow(levels: int) -> str:
    """A valid-looking flow whose on_failure nests ``levels`` plays (11 KB for 400)."""
    nested = "{play: [vm-goodbye], then: " * levels + "hangup" + "}" * levels
    return HEAD + f"    on_failure: {nested}\n"


def errors_of(path: Path) -> list[str]:
    with pytest.raises(FlowValidationError) as info:
        load_flow(path)
    return [f"{e.line}:{e.column}: {e.message}" for e in info.value.errors]


def in_thread(call: object, timeout: float = 10.0) -> object:
    """``call()`` in a daemon thread: a hang fails the test instead of stopping it."""
    out: list[object] = []
    assert callable(call)
    worker = threading.Thread(target=lambda: out.append(_catch(call)), daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"still running after {timeout} s"
    return out[0]


def _catch(call: object) -> object:
    assert callable(call)
    try:
        return call()
    except Exception as exc:
        return exc


# ---- nesting and size of the YAML ------------------------------------------------------


def test_deeply_nested_flow_is_refused_at_its_position(tmp_path: Path) -> None:
    # 400 levels ended `ivr validate` (and the app) with RecursionError
    path = tmp_path / "deep.yaml"
    path.write_text(deep_flow(400))
    assert 10_000 < path.stat().st_size < 12_000
    # the 33rd level: the flow, menus, main, 29 nested plays and the 29th one's list
    column = len("    on_failure: ") + 1 + 28 * len("{play: [vm-goodbye], then: ") + len("{play: ")
    assert errors_of(path) == [
        f"7:{column}: nested too deeply: more than 32 levels of mappings and lists "
        "(the limit of a flow file)"
    ]
    path.write_text(deep_flow(25))  # deep, but within the limit: a valid flow
    assert isinstance(load_flow(path).nodes["main"], Menu)


def test_aliases_count_as_what_they_repeat(tmp_path: Path) -> None:
    # 6 lines that a composer would expand to 10**6 values
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    (message,) = errors_of(path)
    assert message.startswith("5:")  # a4 alone stands for 111,111 values
    assert message.endswith(
        f"too many values: more than {loader.MAX_VALUES} (an alias counts as what it "
        "repeats) (the limit of a flow file)"
    )
    deep = ["d0: &d0 [x]"] + [f"d{i}: &d{i} [[[[*d{i - 1}]]]]" for i in range(1, 10)]
    path.write_text("\n".join(deep) + "\n")
    (message,) = errors_of(path)
    assert message.startswith("9:") and "nested too deeply" in message


def test_too_many_menus(tmp_path: Path) -> None:
    menus = "".join(
        f"  m{i}:\n    prompts: [hello]\n    options: {{1: m0}}\n    on_failure: hangup\n"
        for i in range(1001)
    )
    path = tmp_path / "many.yaml"
    path.write_text(f"start: m0\nmenus:\n{menus}")
    assert errors_of(path) == [
        "2:1: too many menus and time switches: more than 1000 in one flow "
        "(the limit; split it into flows)"
    ]


# ---- what is not a flow file is refused before reading ---------------------------------


def test_devices_and_pipes_are_refused_without_reading(tmp_path: Path) -> None:
    # `ivr validate /dev/zero` read for ever; a named pipe blocked in open()
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    for path in (Path("/dev/zero"), fifo):
        caught = in_thread(lambda p=path: load_flow(p))
        assert isinstance(caught, FlowValidationError)
        assert caught.errors == [
            FlowError(str(path), 1, 1, "not a regular file (a flow is a .yaml text file)")
        ]
    found = in_thread(lambda: load_directory(tmp_path))
    assert found == (
        {},
        [FlowError(str(fifo), 1, 1, "not a regular file (a flow is a .yaml text file)")],
    )


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:  # sparse: the size says it all
        handle.truncate(9_400_000)
    caught = in_thread(lambda: load_flow(path), timeout=2.0)
    assert isinstance(caught, FlowValidationError)
    assert [e.message for e in caught.errors] == [
        f"the file is 9400000 bytes; a flow file is at most {loader.MAX_FILE_BYTES} bytes "
        "(split it into flows)"
    ]
    path.write_bytes(b"#" * loader.MAX_FILE_BYTES)  # at the limit: read (and found empty)
    assert errors_of(path) == ["1:1: the flow file is empty"]


# ---- validation time is linear ---------------------------------------------------------


def chain(size: int) -> Flow:
    """``size`` menus, each on_failure to the next (silent), key 1 to an unknown menu."""
    nodes: dict[str, Node] = {}
    for i in range(size):
        pos = Pos("chain.yaml", i + 3, 3)
        following = GotoMenu(f"m{i + 1}", pos) if i + 1 < size else Hangup(pos)
        nodes[f"m{i}"] = Menu(
            name=f"m{i}",
            prompts=(Sound("hello"),),
            options=MappingProxyType({"1": GotoMenu(f"m{i}x", pos)}),
            on_failure=Play((Sound("hello"),), following, pos),
            pos=pos,
        )
    return Flow(name="chain", start="m0", nodes=MappingProxyType(nodes))


def test_checks_of_a_big_flow_take_linear_time() -> None:
    # the loop, reachability and hint checks were quadratic to cubic in the menus
    flow = chain(2000)
    reader = NodeReader("chain.yaml")
    started = time.perf_counter()
    check_flow(flow, Pos("chain.yaml", 1, 8), reader, known_users=None, known_flows=None)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{elapsed:.1f} s"  # it was 27 s
    assert len(reader.errors) == 2000  # the unknown menus; no loop, all reachable
    hints = sum("did you mean" in e.message for e in reader.errors)
    assert hints == MAX_SUGGESTIONS  # then no more: each compares with every name
