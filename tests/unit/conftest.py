"""Fixtures of the unit tests: ``run`` runs the `callcontrol` command in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Run, restore_logging, runner


@pytest.fixture
def run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Run]:
    """The `callcontrol` command on a fresh, migrated SQLite database (see cli_helpers)."""
    with restore_logging():
        yield runner(tmp_path, monkeypatch, capsys)
