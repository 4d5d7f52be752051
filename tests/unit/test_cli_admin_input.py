"""Bad input from an admin: one clear line and a non-zero exit, nothing stored changed.

The `callcontrol` command in-process on a real SQLite database (the ``run`` fixture).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_helpers import ALICE_PW, BOB_PW, REPO_FLOWS, Result, Run, add_alice, write_flow

from callcontrol.domain.call_records import CallDirection
from callcontrol.store.db import Database
from callcontrol.store.repositories import CallRecordRepository

NUMBER = "+442079460000"


def db_file(tmp_path: Path) -> Path:
    return tmp_path / "callcontrol.db"


def one_line_error(result: Result) -> str:
    """The error line of a command that failed as it should: exit 1, one line."""
    assert result.code == 1, (result.out, result.err)
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    return result.err


# ---- 6: control characters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "named"),
    [
        ("\x1b[31mrefund", "U+001B"),
        ("ok\n#9 2026-01-01 purchase 1000.000000", "U+000A"),
        ("abc\u202edef", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("nul\x00", "U+0000"),
    ],
)
def test_credits_adjust_refuses_control_characters(run: Run, reason: str, named: str) -> None:
    err = one_line_error(run("credits", "adjust", "5", "--reason", reason))
    assert named in err
    assert "\x1b" not in err and "\u202e" not in err
    assert run("credits", "ledger").out == "no ledger entries\n"


def test_database_text_is_escaped_on_output(run: Run, tmp_path: Path) -> None:
    async def record() -> None:
        db = Database.from_url(f"sqlite:///{db_file(tmp_path)}")
        try:
            async with db.session() as session:
                await CallRecordRepository(session).start(
                    call_id="c1",
                    direction=CallDirection.INBOUND,
                    caller="\x1b[31m+15551234567\u202e",
                    callee="+442079460000\nfake line",
                    channel_id="ch1",
                    started_at=datetime.now(UTC),
                )
        finally:
            await db.dispose()

    asyncio.run(record())
    out = run("calls", "list").out
    assert out.count("\n") == 1
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b[31m+15551234567\\u202e" in out
    assert "+442079460000\\nfake line" in out


# ---- 7, 8: routing -------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["--user", "--flow"])
def test_numbers_route_to_an_empty_name_keeps_the_route(run: Run, target: str) -> None:
    add_alice(run)
    run("numbers", "add", NUMBER)
    assert run("numbers", "route", NUMBER, "--user", "alice").code == 0
    err = one_line_error(run("numbers", "route", NUMBER, target, ""))
    assert "name" in err
    assert run("numbers", "list").out.rstrip().endswith("rings user alice")


@pytest.mark.parametrize(
    ("flow", "reason"),
    [
        ("missing", "no flow 'missing' in "),
        ("MAIN", "no flow 'MAIN' in "),
        ("rings-zed", "flow 'rings-zed' has 1 error (first: "),
    ],
)
def test_numbers_route_refuses_a_missing_or_invalid_flow(
    run: Run, tmp_path: Path, flow: str, reason: str
) -> None:
    add_alice(run)
    write_flow(tmp_path / "ivr_flows", "main")
    write_flow(tmp_path / "ivr_flows", "rings-zed", rings="zed")
    run("numbers", "add", NUMBER)
    err = one_line_error(run("numbers", "route", NUMBER, "--flow", flow))
    assert reason in err
    assert "flows there: main, rings-zed" in err or "unknown user 'zed'" in err
    assert run("numbers", "list").out.rstrip().endswith("no routing (refuses calls)")
    assert run("numbers", "route", NUMBER, "--flow", "main").code == 0


# ---- 9: removing a user a flow rings --------------------------------------------------------


def test_users_remove_refuses_while_a_flow_rings_them(run: Run, tmp_path: Path) -> None:
    add_alice(run)
    write_flow(tmp_path / "ivr_flows", "reception", rings="alice")
    err = one_line_error(run("users", "remove", "alice"))
    assert "is rung by the flow(s) reception" in err
    assert "alice" in run("users", "list").out
    forced = run("users", "remove", "alice", "--force")
    assert forced.code == 0, forced.err
    assert "note: the flow(s) reception still ring alice" in forced.out
    assert run("users", "list").out == "no users\n"


# ---- 10: emergency numbers --------------------------------------------------------------------


@pytest.mark.parametrize("extension", ["112", "911", "999", "110", "119", "15", "116111"])
def test_users_add_refuses_emergency_and_service_codes(run: Run, extension: str) -> None:
    err = one_line_error(run("users", "add", "x", "--extension", extension, "--password", ALICE_PW))
    assert f"extension {extension} is the " in err
    assert "emergency number" in err or "service code" in err
    assert run("users", "list").out == "no users\n"


# ---- 11: demo seed --------------------------------------------------------------------------


def test_demo_seed_refuses_a_database_with_data(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLCONTROL_FLOWS_DIR", str(REPO_FLOWS))
    run("users", "add", "carol", "--extension", "2001", "--password", BOB_PW)
    err = one_line_error(run("demo", "seed"))
    assert "already has data (1 user(s))" in err and "--force" in err
    assert "alice" not in run("users", "list").out
    skipped = run("demo", "seed", "--if-empty")
    assert skipped.code == 0
    assert "demo data not loaded" in skipped.out
    assert run("credits", "ledger").out == "no ledger entries\n"


def test_dev_run_seeds_only_an_empty_database() -> None:
    dev = (REPO_FLOWS.parent / "dev").read_text()
    assert "cc demo seed --if-empty" in dev
    assert "cc demo seed\n" not in dev


# ---- 13 and the limits of amounts and text ------------------------------------------------


@pytest.mark.parametrize("amount", ["9" * 4301, "0" * 5000 + "1", "-" + "1" * 5000])
def test_credits_adjust_huge_amounts(run: Run, amount: str) -> None:
    err = one_line_error(run("credits", "adjust", amount, "--reason", "typo"))
    assert "at most 40 characters" in err
    assert len(err) < 300  # the input is cut in the message


def test_credits_adjust_says_the_real_limit(run: Run) -> None:
    err = one_line_error(run("credits", "adjust", "-1000001", "--reason", "typo"))
    assert "too small: at least -1000000.000000 credits" in err


def test_credits_adjust_refuses_a_reason_over_the_limit(run: Run) -> None:
    err = one_line_error(run("credits", "adjust", "5", "--reason", "x" * 131_072))
    assert "131072 characters: at most 256" in err
    assert run("credits", "ledger").out == "no ledger entries\n"
    assert run("credits", "adjust", "5", "--reason", "y" * 256).code == 0


def test_long_input_is_cut_in_messages(run: Run) -> None:
    err = one_line_error(
        run("users", "add", "a" * 5000, "--extension", "1001", "--password", ALICE_PW)
    )
    assert "(5000 characters)" in err
    assert len(err) < 300


# ---- 15, 17: the schema ---------------------------------------------------------------------


def set_schema_version(tmp_path: Path, version: str) -> None:
    with sqlite3.connect(db_file(tmp_path)) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (version,))


def test_an_unknown_schema_version_is_refused_by_every_command(run: Run, tmp_path: Path) -> None:
    set_schema_version(tmp_path, "9999_future")
    for argv in (["credits", "balance"], ["users", "list"], ["db", "upgrade"]):
        err = one_line_error(run(*argv))
        assert "schema version '9999_future', which this callcontrol does not know" in err


def test_an_older_schema_says_to_upgrade(run: Run, tmp_path: Path) -> None:
    set_schema_version(tmp_path, "0001")
    err = one_line_error(run("users", "list"))
    assert "is at schema 0001" in err and "run `callcontrol db upgrade`" in err


def test_a_fresh_data_dir(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = tmp_path / "not" / "yet"
    monkeypatch.setenv("CALLCONTROL_DATA_DIR", str(fresh))
    err = one_line_error(run("credits", "balance"))
    assert "no database at " in err and "run `callcontrol db upgrade`" in err
    assert not (fresh / "callcontrol.db").exists()
    current = run("db", "current")
    assert (current.code, current.out.split(" (")[0]) == (1, "schema none")
    assert not (fresh / "callcontrol.db").exists()
    upgraded = run("db", "upgrade")
    assert upgraded.code == 0, upgraded.err
    assert run("credits", "balance").code == 0


# ---- 16: a closed pipe ----------------------------------------------------------------------


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has exited
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCONTROL_")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "callcontrol", "config", "doc"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 141


# ---- smaller ones -----------------------------------------------------------------------------


def test_an_empty_password_says_so(run: Run) -> None:
    err = one_line_error(run("users", "add", "alice", "--extension", "1001", "--password", ""))
    assert "--password is empty" in err


def test_ivr_graph_refuses_an_empty_output(run: Run, tmp_path: Path) -> None:
    write_flow(tmp_path / "ivr_flows", "main")
    err = one_line_error(run("ivr", "graph", "main", "-o", ""))
    assert "-o is empty" in err
    assert not list(tmp_path.glob("*.svg"))


def test_ivr_simulate_refuses_a_time_in_the_dst_gap(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLCONTROL_FLOWS_DIR", str(REPO_FLOWS))
    err = one_line_error(run("ivr", "simulate", "main", "--at", "2026-03-29T01:30"))
    assert "does not exist in Europe/London" in err
    fine = run("ivr", "simulate", "main", "--at", "2026-03-29T02:30", "--keys", "hangup")
    assert fine.code == 0, fine.err


def test_rates_prune_deletes_old_rate_sets(run: Run, tmp_path: Path) -> None:
    rates = tmp_path / "r.csv"
    for price in ("0.01", "0.02"):
        rates.write_text(
            "direction,prefix,country,number_type,price_per_minute,connection_fee,"
            f"increments,description\noutbound,,GB,,{price},0,60/60,UK\n"
        )
        assert run("rates", "import", str(rates)).code == 0
    pruned = run("rates", "prune", "--keep", "1")
    assert pruned.code == 0, pruned.err
    assert pruned.out.startswith("pruned rate set 1 (1 rates from ")
    assert run("rates", "list").out.startswith("rate set 2:")
    err = one_line_error(run("rates", "prune", "--keep", "0"))
    assert "--keep must be at least 1" in err


def test_a_long_number_is_cut_in_messages(run: Run) -> None:
    err = one_line_error(run("numbers", "add", "+44" + "1" * 5000))
    assert "(5003 characters)" in err
    assert len(err) < 300
