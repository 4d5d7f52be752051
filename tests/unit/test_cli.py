"""The `callcontrol` command, run in-process against a fresh SQLite database.

ARI points at a closed port (127.0.0.1:9), so no Asterisk is touched: commands that
would update Asterisk must still succeed and say that Asterisk was not updated.
The ``run`` fixture is in conftest.py, the helpers in cli_helpers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import (
    ALICE_PW,
    BOB_PW,
    REPO_FLOWS,
    SECRET,
    Run,
    add_alice,
    usage_error,
    write_flow,
)

from callcontrol.cli import main
from callcontrol.config import Settings

# ---- db -----------------------------------------------------------------------------------


def test_db_current_after_upgrade(run: Run) -> None:
    result = run("db", "current")
    assert result.code == 0
    assert result.out.startswith("schema ")
    assert "latest" in result.out


def test_db_upgrade_is_idempotent(run: Run) -> None:
    assert run("db", "upgrade").code == 0


# ---- users ----------------------------------------------------------------------------------


def test_users_add_prints_the_user_and_survives_missing_asterisk(run: Run) -> None:
    result = add_alice(run)
    assert "added user alice, extension 1001" in result.out
    assert "realm callcontrol" in result.out
    assert "note: Asterisk not updated now" in result.out
    assert "the app applies it when it connects" in result.out
    assert ALICE_PW not in result.out + result.err


def test_users_add_duplicate_extension_names_extension_and_holder(run: Run) -> None:
    add_alice(run)
    result = run("users", "add", "bob", "--extension", "1001", "--password", BOB_PW)
    assert result.code == 1
    assert result.err.startswith("error: ")
    assert "extension 1001" in result.err
    assert "'alice'" in result.err
    assert result.out == ""


def test_users_add_duplicate_name(run: Run) -> None:
    add_alice(run)
    result = run("users", "add", "alice", "--extension", "1002", "--password", BOB_PW)
    assert result.code == 1
    assert "user name 'alice' is already taken" in result.err


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 10 characters"),
        ("1234567890", "digits only"),
        ("aaaaaaaaaa", "different characters"),
        ("bob-is-the-best", "user name"),
        ("my-1002-phone", "extension"),
        ("password123", "most common"),
    ],
)
def test_users_add_weak_password_gives_the_reason(run: Run, password: str, reason: str) -> None:
    result = run("users", "add", "bob", "--extension", "1002", "--password", password)
    assert result.code == 1
    assert result.err.startswith("error: password")
    assert reason in result.err
    assert run("users", "list").out == "no users\n"


@pytest.mark.parametrize(
    ("name", "extension", "reason"),
    [
        ("bob", "0123", "must not start with 0"),
        ("bob", "1", "2 to 6 digits"),
        ("bob", "12a", "digits only"),
        ("1bob", "1002", "start with a letter"),
    ],
)
def test_users_add_invalid_input(run: Run, name: str, extension: str, reason: str) -> None:
    result = run("users", "add", name, "--extension", extension, "--password", BOB_PW)
    assert result.code == 1
    assert reason in result.err


def test_users_add_password_from_stdin(run: Run) -> None:
    result = run(
        "users", "add", "bob", "--extension", "1002", "--password", "-", stdin=BOB_PW + "\n"
    )
    assert result.code == 0, result.err
    assert "added user bob, extension 1002" in result.out


def test_users_add_weak_password_from_stdin(run: Run) -> None:
    result = run("users", "add", "bob", "--extension", "1002", "--password", "-", stdin="\n")
    assert result.code == 1
    assert "at least 10 characters" in result.err


def test_users_add_without_password_and_no_terminal(run: Run) -> None:
    result = run("users", "add", "bob", "--extension", "1002", stdin="")
    assert result.code == 1
    assert "--password" in result.err


def test_users_list(run: Run) -> None:
    assert run("users", "list").out == "no users\n"
    add_alice(run)
    run("users", "add", "bob", "--extension", "1002", "--password", BOB_PW)
    result = run("users", "list")
    assert result.code == 0
    lines = result.out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("alice") and "extension 1001" in lines[0]
    assert lines[1].startswith("bob") and "extension 1002" in lines[1]
    assert lines[0].endswith("numbers: none (cannot call out)")


def test_users_remove(run: Run) -> None:
    add_alice(run)
    result = run("users", "remove", "alice")
    assert result.code == 0
    assert "removed user alice" in result.out
    assert "note: Asterisk not updated now" in result.out
    assert run("users", "list").out == "no users\n"


def test_users_remove_unknown(run: Run) -> None:
    result = run("users", "remove", "zed")
    assert result.code == 1
    assert result.err == "error: no user named 'zed'\n"


def test_users_remove_routed_user_needs_force(run: Run) -> None:
    add_alice(run)
    run("numbers", "add", "+442079460000")
    run("numbers", "route", "+442079460000", "--user", "alice")
    refused = run("users", "remove", "alice")
    assert refused.code == 1
    assert "+442079460000" in refused.err
    forced = run("users", "remove", "alice", "--force")
    assert forced.code == 0
    assert "removed user alice" in forced.out
    assert "+442079460000" in run("numbers", "list").out
    assert "no routing" in run("numbers", "list").out


def test_users_set_password(run: Run) -> None:
    add_alice(run)
    result = run("users", "set-password", "alice", "--password", "through-the-glass-42")
    assert result.code == 0
    assert "password of alice changed" in result.out
    assert "note: Asterisk not updated now" in result.out


def test_users_set_password_from_stdin(run: Run) -> None:
    add_alice(run)
    result = run("users", "set-password", "alice", "--password", "-", stdin="looking-glass-9\n")
    assert result.code == 0
    assert "password of alice changed" in result.out


def test_users_set_password_weak(run: Run) -> None:
    add_alice(run)
    result = run("users", "set-password", "alice", "--password", "alice-1234567")
    assert result.code == 1
    assert "must not contain the user name" in result.err


def test_users_set_password_unknown_user(run: Run) -> None:
    result = run("users", "set-password", "zed", "--password", "through-the-glass-42")
    assert result.code == 1
    assert result.err == "error: no user named 'zed'\n"


# ---- numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "e164", "country", "kind"),
    [
        ("+442079460000", "+442079460000", "GB", "local"),
        ("+44 20 7946 0001", "+442079460001", "GB", "local"),
        ("+447400123456", "+447400123456", "GB", "mobile"),
        ("+448001234567", "+448001234567", "GB", "toll_free"),
    ],
)
def test_numbers_add_infers_type(run: Run, typed: str, e164: str, country: str, kind: str) -> None:
    result = run("numbers", "add", typed)
    assert result.code == 0, result.err
    assert result.out == f"added {e164} ({country}, {kind}); no routing (refuses calls)\n"


def test_numbers_add_with_explicit_type(run: Run) -> None:
    result = run("numbers", "add", "+442079460000", "--type", "toll_free")
    assert result.code == 0
    assert "(GB, toll_free)" in result.out


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("2079460000", "not in international form"),
        ("+44 20 7946 000x", "may contain only"),
        ("+4420794600001234", "E.164 allows at most 15"),
        ("+44123", "not a valid number"),
        ("+999123456789", "unknown country code"),
    ],
)
def test_numbers_add_invalid_number(run: Run, typed: str, reason: str) -> None:
    result = run("numbers", "add", typed)
    assert result.code == 1
    assert result.err.startswith("error: ")
    assert reason in result.err
    assert repr(typed) in result.err


def test_numbers_add_duplicate(run: Run) -> None:
    assert run("numbers", "add", "+442079460000").code == 0
    result = run("numbers", "add", "+44 20 7946 0000")
    assert result.code == 1
    assert result.err == "error: number +442079460000 already exists\n"


def test_numbers_add_bad_type_is_a_usage_error(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(capsys, "numbers", "add", "+442079460000", "--type", "premium")
    assert "invalid choice: 'premium'" in err


def test_numbers_route_to_user_flow_and_none(run: Run, tmp_path: Path) -> None:
    add_alice(run)
    write_flow(tmp_path / "ivr_flows", "main-menu")
    run("numbers", "add", "+442079460000")
    run("numbers", "add", "+448001234567")
    run("numbers", "add", "+442079460001")

    to_user = run("numbers", "route", "+442079460000", "--user", "alice")
    assert to_user.code == 0
    assert to_user.out == "+442079460000: rings user alice\n"
    to_flow = run("numbers", "route", "+448001234567", "--flow", "main-menu")
    assert to_flow.code == 0
    assert to_flow.out == "+448001234567: runs flow main-menu\n"

    listed = run("numbers", "list")
    assert listed.code == 0
    lines = {line.split()[0]: line for line in listed.out.splitlines()}
    assert lines["+442079460000"].endswith("rings user alice")
    assert lines["+442079460001"].endswith("no routing (refuses calls)")
    assert lines["+448001234567"].endswith("runs flow main-menu")
    assert "toll_free" in lines["+448001234567"]

    cleared = run("numbers", "route", "+442079460000", "--none")
    assert cleared.code == 0
    assert cleared.out == "+442079460000: no routing (refuses calls)\n"
    assert run("numbers", "list").out.count("no routing") == 2


def test_numbers_list_empty(run: Run) -> None:
    result = run("numbers", "list")
    assert (result.code, result.out) == (0, "no numbers\n")


@pytest.mark.parametrize("target", [["--user", "alice"], ["--flow", "main"], ["--none"]])
def test_numbers_route_unknown_number(run: Run, target: list[str]) -> None:
    add_alice(run)
    result = run("numbers", "route", "+442079460099", *target)
    assert result.code == 1
    assert result.err == "error: no number +442079460099\n"


def test_numbers_route_unknown_user(run: Run) -> None:
    run("numbers", "add", "+442079460000")
    result = run("numbers", "route", "+442079460000", "--user", "zed")
    assert result.code == 1
    assert result.err == "error: no user named 'zed'\n"


def test_numbers_route_bad_flow_name(run: Run) -> None:
    run("numbers", "add", "+442079460000")
    result = run("numbers", "route", "+442079460000", "--flow", "../etc/passwd")
    assert result.code == 1
    assert "flow name" in result.err


def test_numbers_route_needs_exactly_one_target(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "one of the arguments" in usage_error(capsys, "numbers", "route", "+442079460000")
    err = usage_error(capsys, "numbers", "route", "+442079460000", "--user", "a", "--none")
    assert "not allowed with" in err


def test_numbers_remove(run: Run) -> None:
    run("numbers", "add", "+442079460000")
    assert run("numbers", "remove", "+44 20 7946 0000").out == "removed +44 20 7946 0000\n"
    assert run("numbers", "list").out == "no numbers\n"
    again = run("numbers", "remove", "+442079460000")
    assert again.code == 1
    assert again.err == "error: no number +442079460000\n"


# ---- settings on the command line -------------------------------------------------------------


def test_set_unknown_setting(run: Run) -> None:
    result = run("--set", "ring_timout=3", "users", "list")
    assert result.code == 1
    assert "unknown setting 'ring_timout'" in result.err
    assert "command line" in result.err
    assert result.out == ""


def test_set_bad_value(run: Run) -> None:
    result = run("--set", "ring_timeout=0", "config", "show")
    assert result.code == 1
    assert "setting 'ring_timeout'" in result.err


def test_set_without_equals(run: Run) -> None:
    result = run("--set", "ring_timeout", "config", "show")
    assert result.code == 1
    assert "--set expects KEY=VALUE" in result.err


def test_set_overrides_environment(run: Run) -> None:
    result = run("--set", "ring_timeout=42", "config", "show")
    assert result.code == 0
    assert "ring_timeout = 42\n" in result.out


def test_unknown_environment_variable(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCONTROL_RING_TIMOUT", "3")
    result = run("users", "list")
    assert result.code == 1
    assert "CALLCONTROL_RING_TIMOUT" in result.err


def test_config_file_option(run: Run, tmp_path: Path) -> None:
    (tmp_path / "other.toml").write_text("ring_timeout = 17\n")
    assert "ring_timeout = 17\n" in run("--config", "other.toml", "config", "show").out
    missing = run("--config", "missing.toml", "config", "show")
    assert missing.code == 1
    assert "missing.toml does not exist" in missing.err


def test_config_show_never_prints_the_ari_password(run: Run, tmp_path: Path) -> None:
    result = run("config", "show")  # the fixture also asserts SECRET is absent
    assert result.code == 0
    assert "ari_password = ********\n" in result.out
    assert f"data_dir = {tmp_path}\n" in result.out
    assert "ari_url = http://127.0.0.1:9\n" in result.out
    shown = {line.split(" = ", 1)[0] for line in result.out.splitlines()}
    assert shown == set(Settings.model_fields)


def test_config_show_masks_the_database_password(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCONTROL_DATABASE_URL", f"postgresql+asyncpg://cc:{SECRET}@db/cc")
    result = run("config", "show")
    assert result.code == 0
    assert "database_url = postgresql+asyncpg://cc:********@db/cc\n" in result.out


def test_config_doc_lists_every_setting(run: Run) -> None:
    result = run("config", "doc")
    assert result.code == 0
    for name in Settings.model_fields:
        assert f"{name} (CALLCONTROL_{name.upper()}), default " in result.out


# ---- usage errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["users"],
        ["users", "add", "bob"],
        ["users", "add", "--extension", "1002"],
        ["numbers", "add"],
        ["calls", "list", "--limit", "many"],
        ["pbx", "restart"],
        ["config"],
    ],
)
def test_usage_errors_exit_2(run: Run, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    err = usage_error(capsys, *argv)
    assert "error: " in err


def test_help_exits_0(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "usage: callcontrol" in capsys.readouterr().out


# ---- calls ----------------------------------------------------------------------------------


def test_calls_list_on_an_empty_database(run: Run) -> None:
    result = run("calls", "list")
    assert result.code == 0
    assert result.err == ""


def test_calls_list_bad_limit(run: Run) -> None:
    result = run("calls", "list", "--limit", "0")
    assert result.code == 1
    assert "limit must be between 1 and 1000" in result.err


# ---- demo ---------------------------------------------------------------------------------


def test_demo_seed_is_idempotent(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCONTROL_FLOWS_DIR", str(REPO_FLOWS))  # the demo runs flow main
    first = run("demo", "seed")
    assert first.code == 0, first.err
    assert run("demo", "seed", "--force").code == 0
    listed = run("numbers", "list").out
    assert "+442079460000" in listed and "rings user alice" in listed
    assert run("users", "list").out.count("extension") == 2


# ---- database not ready -------------------------------------------------------------------


def test_commands_on_a_database_without_schema(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLCONTROL_DATA_DIR", str(tmp_path / "fresh"))
    (tmp_path / "fresh").mkdir()
    result = run("users", "list")
    assert result.code == 1
    assert result.err.startswith("error: no database at ")
    assert "run `callcontrol db upgrade`" in result.err
    current = run("db", "current")
    assert current.code == 1
    assert "schema none" in current.out


def test_directory_commands_dispose_their_database(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callcontrol.store.db import Database

    created: list[Database] = []
    disposed: list[Database] = []
    original_from_url = Database.from_url.__func__  # type: ignore[attr-defined]
    original_dispose = Database.dispose

    def from_url(cls: type[Database], *args: object, **kwargs: object) -> Database:
        db = original_from_url(cls, *args, **kwargs)
        created.append(db)
        return db

    async def dispose(self: Database) -> None:
        disposed.append(self)
        await original_dispose(self)

    monkeypatch.setattr(Database, "from_url", classmethod(from_url))
    monkeypatch.setattr(Database, "dispose", dispose)
    assert run("users", "list").code == 0
    assert created
    assert all(db in disposed for db in created)


def test_demo_phone_for_an_unknown_user(run: Run) -> None:
    result = run("demo", "phone", "zed", "--password", "through-the-glass-42")
    assert result.code == 1
    assert result.err == "error: no user named 'zed'\n"
