"""``callcontrol admins``: accounts, a generated password printed once, tokens, the audit."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcontrol.cli import main
from callcontrol.store.migrate import upgrade


def test_admins_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    upgrade(f"sqlite+aiosqlite:///{tmp_path}/callcontrol.db")
    base = ["--set", f"data_dir={tmp_path}"]
    assert main([*base, "admins", "add", "root", "--generate"]) == 0
    out = capsys.readouterr().out
    assert "added admin root" in out and "password (shown once): " in out
    assert main([*base, "admins", "add", "root", "--generate"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main([*base, "admins", "token", "root"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("cc_")
    assert main([*base, "admins", "list"]) == 0
    assert capsys.readouterr().out.startswith("root")
    assert main([*base, "admins", "revoke-tokens", "root"]) == 0
    assert "revoked 1 API token" in capsys.readouterr().out
    assert main([*base, "admins", "audit"]) == 0
    assert "no admin actions" in capsys.readouterr().out
    assert main([*base, "admins", "remove", "root"]) == 0
    assert main([*base, "admins", "remove", "root"]) == 1
    assert "no admin named 'root'" in capsys.readouterr().err
