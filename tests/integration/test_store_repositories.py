"""Repositories against real databases: users, numbers with routes, call records."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from callcontrol.domain.call_records import CallDirection, Disposition, EndedBy
from callcontrol.domain.directory import Route, RouteKind
from callcontrol.domain.numbers import NumberType
from callcontrol.domain.users import sip_digests
from callcontrol.errors import Conflict, InvalidInput, NotFound
from callcontrol.store.db import Database
from callcontrol.store.repositories import (
    CallRecordRepository,
    NumberRepository,
    UserRepository,
)

REALM = "callcontrol"
T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
LONDON = "+442079460000"
TOLL_FREE = "+448001234567"


async def _add_user(db: Database, name: str, extension: str) -> None:
    async with db.session() as session:
        digests = sip_digests(extension, REALM, f"pw-{name}-long")
        await UserRepository(session).add(name, extension, digests, REALM)


async def _add_number(db: Database, e164: str = LONDON) -> None:
    async with db.session() as session:
        await NumberRepository(session).add(e164, "GB", NumberType.LOCAL)


# users


async def test_users_add_get_list_remove(database: Database) -> None:
    digests = sip_digests("1001", REALM, "a-long-pass")
    async with database.session() as session:
        users = UserRepository(session)
        alice = await users.add("alice", "1001", digests, REALM)
        await users.add("bob", "1002", sip_digests("1002", REALM, "b-long-pass"), REALM)
    assert alice.id > 0
    assert (alice.digest_md5, alice.digest_sha256, alice.realm) == (
        digests.md5,
        digests.sha256,
        REALM,
    )
    async with database.session() as session:
        users = UserRepository(session)
        assert await users.get_by_name("alice") == alice
        assert await users.get_by_extension("1001") == alice
        assert await users.get_by_name("nobody") is None
        assert await users.get_by_extension("9999") is None
        assert [u.name for u in await users.list()] == ["alice", "bob"]
        assert await users.remove("bob") is True
        assert await users.remove("bob") is False
        assert [u.name for u in await users.list()] == ["alice"]


async def test_users_duplicates_are_conflicts_and_the_session_goes_on(
    database: Database,
) -> None:
    await _add_user(database, "alice", "1001")
    async with database.session() as session:
        users = UserRepository(session)
        digests = sip_digests("1001", REALM, "x-long-pass")
        with pytest.raises(Conflict, match="user name 'alice'"):
            await users.add("alice", "1009", digests, REALM)
        with pytest.raises(Conflict, match="extension 1001"):
            await users.add("carol", "1001", digests, REALM)
        await users.add("carol", "1003", digests, REALM)  # the transaction is still usable
    async with database.session() as session:
        assert [u.name for u in await UserRepository(session).list()] == ["alice", "carol"]


async def test_users_set_digests(database: Database) -> None:
    await _add_user(database, "alice", "1001")
    new = sip_digests("1001", "other-realm", "new-long-pass")
    async with database.session() as session:
        users = UserRepository(session)
        before = await users.get_by_name("alice")  # loaded into the session first
        updated = await users.set_digests("alice", new, "other-realm")
        assert await users.set_digests("nobody", new, "other-realm") is None
        assert await users.get_by_name("alice") == updated
    async with database.session() as session:
        alice = await UserRepository(session).get_by_name("alice")
    assert alice is not None and alice == updated and alice != before
    assert (alice.digest_md5, alice.digest_sha256, alice.realm) == (
        new.md5,
        new.sha256,
        "other-realm",
    )


async def test_removing_a_routed_user_is_refused_by_the_database(database: Database) -> None:
    await _add_user(database, "alice", "1001")
    await _add_number(database)
    async with database.session() as session:
        await NumberRepository(session).set_route_user(LONDON, "alice")
    async with database.session() as session:
        with pytest.raises(Conflict, match=r"'alice' receives the calls of \+442079460000"):
            await UserRepository(session).remove("alice")
        assert await UserRepository(session).get_by_name("alice") is not None


# numbers and routes


async def test_numbers_add_get_list_remove(database: Database) -> None:
    async with database.session() as session:
        numbers = NumberRepository(session)
        added = await numbers.add(TOLL_FREE, "GB", NumberType.TOLL_FREE)
        await numbers.add(LONDON, "GB", NumberType.LOCAL)
    assert added.route is None
    async with database.session() as session:
        numbers = NumberRepository(session)
        assert await numbers.get(TOLL_FREE) == added
        assert await numbers.get("+15550000000") is None
        assert [n.e164 for n in await numbers.list()] == [LONDON, TOLL_FREE]
        assert await numbers.remove(TOLL_FREE) is True
        assert await numbers.remove(TOLL_FREE) is False
        assert [n.e164 for n in await numbers.list()] == [LONDON]


async def test_duplicate_number_is_a_conflict(database: Database) -> None:
    await _add_number(database)
    async with database.session() as session:
        with pytest.raises(Conflict, match=r"number \+442079460000 already exists"):
            await NumberRepository(session).add(LONDON, "GB", NumberType.LOCAL)


async def test_routes_user_flow_clear(database: Database) -> None:
    await _add_user(database, "alice", "1001")
    await _add_number(database)
    async with database.session() as session:
        numbers = NumberRepository(session)
        assert await numbers.route_for(LONDON) == (await numbers.get(LONDON), None)
        routed = await numbers.set_route_user(LONDON, "alice")
        assert routed.route == Route(RouteKind.USER, user_name="alice", user_extension="1001")
        assert await numbers.route_for(LONDON) == (routed, routed.route)
        assert await numbers.routed_to_user("alice") == [LONDON]
        flowed = await numbers.set_route_flow(LONDON, "main-menu")
        assert flowed.route == Route(RouteKind.FLOW, flow_name="main-menu")
        assert await numbers.routed_to_user("alice") == []
        assert [n.route for n in await numbers.list()] == [flowed.route]
        assert await numbers.clear_route(LONDON) is True
        assert await numbers.clear_route(LONDON) is False
        number = await numbers.get(LONDON)
        assert number is not None and number.route is None


async def test_route_for_unknown_number_is_none(database: Database) -> None:
    async with database.session() as session:
        assert await NumberRepository(session).route_for(LONDON) is None


async def test_routing_unknown_number_or_user_is_not_found(database: Database) -> None:
    await _add_number(database)
    async with database.session() as session:
        numbers = NumberRepository(session)
        with pytest.raises(NotFound, match=r"no number \+448001234567"):
            await numbers.set_route_user(TOLL_FREE, "alice")
        with pytest.raises(NotFound, match=r"no number \+448001234567"):
            await numbers.set_route_flow(TOLL_FREE, "main")
        with pytest.raises(NotFound, match=r"no number \+448001234567"):
            await numbers.clear_route(TOLL_FREE)
        with pytest.raises(NotFound, match="no user named 'alice'"):
            await numbers.set_route_user(LONDON, "alice")


async def test_removing_a_number_removes_its_route(database: Database) -> None:
    await _add_user(database, "alice", "1001")
    await _add_number(database)
    async with database.session() as session:
        await NumberRepository(session).set_route_user(LONDON, "alice")
    async with database.session() as session:
        assert await NumberRepository(session).remove(LONDON) is True
    async with database.session() as session:
        assert await UserRepository(session).remove("alice") is True  # nothing routes to her


async def test_clear_routes_to_user(database: Database) -> None:
    await _add_user(database, "alice", "1001")
    await _add_number(database, LONDON)
    await _add_number(database, TOLL_FREE)
    async with database.session() as session:
        numbers = NumberRepository(session)
        await numbers.set_route_user(LONDON, "alice")
        await numbers.set_route_user(TOLL_FREE, "alice")
        assert await numbers.clear_routes_to_user("alice") == [LONDON, TOLL_FREE]
        assert [n.route for n in await numbers.list()] == [None, None]


# call records


async def _start(db: Database, call_id: str = "call-1", **extra: object) -> None:
    async with db.session() as session:
        await CallRecordRepository(session).start(
            call_id=call_id,
            direction=CallDirection.INBOUND,
            caller="+33123456789",
            callee=LONDON,
            channel_id=f"chan-{call_id}",
            started_at=extra.pop("started_at", T0),  # type: ignore[arg-type]
            number_e164=LONDON,
            **extra,  # type: ignore[arg-type]
        )


async def test_call_record_lifecycle(database: Database) -> None:
    await _add_user(database, "alice", "1001")
    async with database.session() as session:
        record = await CallRecordRepository(session).start(
            call_id="call-1",
            direction=CallDirection.INBOUND,
            caller="+33123456789",
            callee=LONDON,
            channel_id="1714550400.1",
            started_at=T0,
            number_e164=LONDON,
            user_name="alice",
        )
    assert record.is_open and record.user_name == "alice" and record.user_id is not None
    assert record.started_at == T0 and record.disposition is None
    async with database.session() as session:
        calls = CallRecordRepository(session)
        assert await calls.mark_answered("call-1", T0 + timedelta(seconds=5)) is True
        assert await calls.mark_answered("call-1", T0 + timedelta(seconds=9)) is False
        assert [r.call_id for r in await calls.open_records()] == ["call-1"]
        applied = await calls.finish(
            "call-1",
            ended_at=T0 + timedelta(seconds=65),
            disposition=Disposition.ANSWERED,
            hangup_cause=16,
            ended_by=EndedBy.CALLER,
        )
        assert applied is True
        assert await calls.open_records() == []
        assert await calls.mark_answered("call-1", T0 + timedelta(seconds=70)) is False
        final = await calls.get("call-1")
    assert final is not None
    assert final.answered_at == T0 + timedelta(seconds=5)
    assert final.ended_at == T0 + timedelta(seconds=65)
    assert final.disposition is Disposition.ANSWERED
    assert (final.hangup_cause, final.ended_by) == (16, EndedBy.CALLER)
    assert final.ended_at is not None and final.ended_at.tzinfo is not None


async def test_unknown_user_name_is_kept_as_snapshot(database: Database) -> None:
    await _start(database, user_name="ghost")
    async with database.session() as session:
        record = await CallRecordRepository(session).get("call-1")
    assert record is not None and (record.user_id, record.user_name) == (None, "ghost")


async def test_duplicate_call_id_is_a_conflict(database: Database) -> None:
    await _start(database)
    with pytest.raises(Conflict, match="call record call-1 already exists"):
        await _start(database)


async def test_second_finish_changes_nothing(database: Database) -> None:
    await _start(database)
    async with database.session() as session:
        calls = CallRecordRepository(session)
        first = await calls.finish(
            "call-1",
            ended_at=T0 + timedelta(seconds=3),
            disposition=Disposition.NO_ANSWER,
            hangup_cause=19,
            ended_by=EndedBy.SYSTEM,
        )
        second = await calls.finish(
            "call-1",
            ended_at=T0 + timedelta(seconds=9),
            disposition=Disposition.FAILED,
            hangup_cause=0,
            ended_by=EndedBy.PBX,
        )
        record = await calls.get("call-1")
        unknown = await calls.finish(
            "nope", ended_at=T0, disposition="failed", hangup_cause=None, ended_by=None
        )
    assert (first, second, unknown) == (True, False, False)
    assert record is not None
    assert (record.disposition, record.ended_by) == (Disposition.NO_ANSWER, EndedBy.SYSTEM)


async def test_concurrent_finishes_exactly_one_applies(database: Database) -> None:
    await _start(database)
    ways = list(EndedBy)

    async def finish(index: int) -> bool:
        async with database.session() as session:
            return await CallRecordRepository(session).finish(
                "call-1",
                ended_at=T0 + timedelta(seconds=10 + index),
                disposition=Disposition.ANSWERED,
                hangup_cause=16,
                ended_by=ways[index % len(ways)],
            )

    results = await asyncio.gather(*(finish(i) for i in range(8)))
    assert results.count(True) == 1
    winner = results.index(True)
    async with database.session() as session:
        record = await CallRecordRepository(session).get("call-1")
    assert record is not None
    assert record.ended_at == T0 + timedelta(seconds=10 + winner)
    assert record.ended_by is ways[winner % len(ways)]


async def test_removed_user_leaves_call_records_with_the_name(database: Database) -> None:
    await _add_user(database, "alice", "1001")
    await _start(database, user_name="alice")
    async with database.session() as session:
        assert await UserRepository(session).remove("alice") is True
    async with database.session() as session:
        record = await CallRecordRepository(session).get("call-1")
    assert record is not None and (record.user_id, record.user_name) == (None, "alice")


async def test_list_recent_newest_first(database: Database) -> None:
    for minute in range(5):
        await _start(database, f"call-{minute}", started_at=T0 + timedelta(minutes=minute))
    async with database.session() as session:
        calls = CallRecordRepository(session)
        recent = await calls.list_recent(3)
        with pytest.raises(InvalidInput):
            await calls.list_recent(0)
        assert await calls.get("missing") is None
    assert [r.call_id for r in recent] == ["call-4", "call-3", "call-2"]


async def test_unknown_disposition_is_kept_as_text(database: Database) -> None:
    await _start(database)
    async with database.session() as session:
        calls = CallRecordRepository(session)
        await calls.finish(
            "call-1",
            ended_at=T0,
            disposition="refused_insufficient_credits",
            hangup_cause=None,
            ended_by=None,
        )
        record = await calls.get("call-1")
    assert record is not None and record.disposition == "refused_insufficient_credits"
