"""Helpers for the tests of the `callcontrol` command (test_cli*.py); the ``run``
fixture that uses them is in conftest.py."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callcontrol.cli import main

SECRET = "test-secret-xyz"
ALICE_PW = "wonderland-7291"
BOB_PW = "builder-5813-x"
REPO_FLOWS = Path(__file__).resolve().parents[2] / "ivr_flows"


@dataclass
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@contextlib.contextmanager
def restore_logging() -> Iterator[None]:
    """main() installs its own root handler on the (captured) stderr; undo that."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """``run(*argv)``: main() in-process on a migrated SQLite database in ``tmp_path``."""
    for name in list(os.environ):
        if name.startswith("CALLCONTROL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no ./callcontrol.toml from the checkout
    monkeypatch.setenv("CALLCONTROL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CALLCONTROL_ARI_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CALLCONTROL_ARI_PASSWORD", SECRET)

    def invoke(*argv: str, stdin: str | None = None) -> Result:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(argv))
        captured = capsys.readouterr()
        both = captured.out + captured.err
        assert "Traceback" not in both
        assert SECRET not in both
        return Result(code, captured.out, captured.err)

    upgraded = invoke("db", "upgrade")
    assert upgraded.code == 0, upgraded.err
    assert "database at schema" in upgraded.out
    return invoke


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "usage: callcontrol" in captured.err
    return captured.err


def add_alice(run: Run) -> Result:
    result = run("users", "add", "alice", "--extension", "1001", "--password", ALICE_PW)
    assert result.code == 0, result.err
    return result


def write_flow(directory: Path, name: str, rings: str = "alice") -> Path:
    """A small valid flow ``name`` in ``directory`` (the default flows_dir: ./ivr_flows)
    whose key 1 rings ``rings``."""
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(
        "start: main\n"
        "menus:\n"
        "  main:\n"
        "    prompts: [vm-goodbye]\n"
        f"    options: {{'1': {{ring: {rings}}}}}\n"
        "    on_failure: hangup\n"
    )
    return path
