"""The directory service: what an admin does, validated, against real databases."""

from __future__ import annotations

import pytest

from callcontrol.directory import DirectoryService
from callcontrol.domain.directory import Route, RouteKind
from callcontrol.domain.numbers import NumberType
from callcontrol.domain.users import sip_digests
from callcontrol.errors import Conflict, InvalidInput, NotFound, WeakPassword
from callcontrol.store.db import Database
from callcontrol.store.repositories import NumberRepository

REALM = "callcontrol"
PASSWORD = "correct horse battery"
LONDON = "+44 20 7946 0000"
LONDON_E164 = "+442079460000"


@pytest.fixture
def directory(database: Database) -> DirectoryService:
    return DirectoryService(database, REALM)


async def test_add_and_get_user_stores_digests_of_extension(
    directory: DirectoryService,
) -> None:
    alice = await directory.add_user("Alice", "1001", PASSWORD)
    assert (alice.name, alice.extension, alice.realm) == ("alice", "1001", REALM)
    expected = sip_digests("1001", REALM, PASSWORD)  # the SIP username is the extension
    assert (alice.digest_md5, alice.digest_sha256) == (expected.md5, expected.sha256)
    assert PASSWORD not in repr(alice)
    assert await directory.get_user("alice") == alice
    assert await directory.list_users() == [alice]


async def test_add_user_conflicts_name_which(directory: DirectoryService) -> None:
    await directory.add_user("alice", "1001", PASSWORD)
    with pytest.raises(Conflict, match="user name 'alice' is already taken"):
        await directory.add_user("ALICE", "1002", PASSWORD)
    with pytest.raises(Conflict, match="extension 1001 is already taken by 'alice'"):
        await directory.add_user("bob", "1001", PASSWORD)


@pytest.mark.parametrize(
    "case",
    [
        ("9lives", "1001", PASSWORD, InvalidInput, "start with a letter"),
        ("alice", "0123", PASSWORD, InvalidInput, "must not start with 0"),
        ("alice", "1001", "short", WeakPassword, "at least 10"),
        ("alice", "1001", "alice-rocks-2025", WeakPassword, "user name"),
        ("alice", "1001", "phone1001pw", WeakPassword, "extension"),
        ("alice", "1001", "1234567890123", WeakPassword, "digits only"),
    ],
)
async def test_add_user_validates(
    directory: DirectoryService, case: tuple[str, str, str, type[Exception], str]
) -> None:
    name, extension, password, error, reason = case
    with pytest.raises(error, match=reason):
        await directory.add_user(name, extension, password)
    assert await directory.list_users() == []


async def test_set_password(directory: DirectoryService) -> None:
    before = await directory.add_user("alice", "1001", PASSWORD)
    after = await directory.set_password("alice", "another good one")
    assert after.digest_md5 == sip_digests("1001", REALM, "another good one").md5
    assert after.digest_md5 != before.digest_md5
    with pytest.raises(WeakPassword, match="extension"):
        await directory.set_password("alice", "x-1001-long-pw")
    with pytest.raises(NotFound, match="no user named 'bob'"):
        await directory.set_password("bob", "another good one")


async def test_unknown_user(directory: DirectoryService) -> None:
    with pytest.raises(NotFound, match="no user named 'bob'"):
        await directory.get_user("bob")
    with pytest.raises(NotFound, match="no user named 'bob'"):
        await directory.remove_user("bob")


async def test_add_number_infers_or_takes_the_type(directory: DirectoryService) -> None:
    local = await directory.add_number(LONDON)
    assert (local.e164, local.country, local.number_type) == ("+442079460000", "GB", "local")
    mobile = await directory.add_number("+44 7400 123456")
    assert mobile.number_type is NumberType.MOBILE
    toll_free = await directory.add_number("+1 800 555 0100", "TOLL_FREE")
    assert (toll_free.country, toll_free.number_type) == ("US", NumberType.TOLL_FREE)
    national = await directory.add_number("+44 20 8123 4567", "national")
    assert national.number_type is NumberType.NATIONAL
    assert [n.e164 for n in await directory.list_numbers()] == [
        "+18005550100",
        "+442079460000",
        "+442081234567",
        "+447400123456",
    ]


async def test_add_number_errors(directory: DirectoryService) -> None:
    with pytest.raises(InvalidInput, match="local, national, mobile, toll_free"):
        await directory.add_number(LONDON, "premium")
    with pytest.raises(InvalidInput, match="international form"):
        await directory.add_number("020 7946 0000")
    await directory.add_number(LONDON)
    with pytest.raises(Conflict, match=r"\+442079460000 already exists"):
        await directory.add_number("+442079460000")


async def test_remove_number(directory: DirectoryService) -> None:
    await directory.add_number(LONDON)
    await directory.remove_number("+442079460000")
    assert await directory.list_numbers() == []
    with pytest.raises(NotFound, match=r"no number \+442079460000"):
        await directory.remove_number(LONDON)
    with pytest.raises(NotFound, match=r"no number \+442079460000"):
        await directory.get_number(LONDON)


async def test_routing(directory: DirectoryService, database: Database) -> None:
    await directory.add_user("alice", "1001", PASSWORD)
    await directory.add_number(LONDON)
    routed = await directory.route_to_user("+44 (20) 7946-0000", "Alice")
    assert routed.route == Route(RouteKind.USER, user_name="alice", user_extension="1001")
    flowed = await directory.route_to_flow(LONDON, "main_menu")
    assert flowed.route == Route(RouteKind.FLOW, flow_name="main_menu")
    assert (await directory.get_number(LONDON)).route == flowed.route
    cleared = await directory.clear_route(LONDON)
    assert cleared.route is None
    async with database.session() as session:  # what an incoming call sees
        assert await NumberRepository(session).route_for(LONDON_E164) == (cleared, None)


async def test_routing_errors(directory: DirectoryService) -> None:
    await directory.add_number(LONDON)
    with pytest.raises(NotFound, match="no user named 'ghost'"):
        await directory.route_to_user(LONDON, "ghost")
    with pytest.raises(NotFound, match=r"no number \+448001234567"):
        await directory.route_to_user("+44 800 123 4567", "ghost")
    with pytest.raises(NotFound, match=r"no number \+448001234567"):
        await directory.route_to_flow("+44 800 123 4567", "main")
    with pytest.raises(NotFound, match=r"no number \+448001234567"):
        await directory.clear_route("+44 800 123 4567")
    with pytest.raises(InvalidInput, match="flow name"):
        await directory.route_to_flow(LONDON, "../etc/passwd")


async def test_routing_to_a_removed_user(directory: DirectoryService) -> None:
    await directory.add_user("bob", "1002", PASSWORD)
    await directory.add_number(LONDON)
    await directory.remove_user("bob")
    with pytest.raises(NotFound, match="no user named 'bob'"):
        await directory.route_to_user(LONDON, "bob")
    assert (await directory.get_number(LONDON)).route is None


async def test_remove_routed_user_names_the_numbers(directory: DirectoryService) -> None:
    await directory.add_user("alice", "1001", PASSWORD)
    await directory.add_number(LONDON)
    await directory.add_number("+44 800 123 4567")
    await directory.route_to_user(LONDON, "alice")
    await directory.route_to_user("+448001234567", "alice")
    with pytest.raises(Conflict, match=r"receives the calls of \+442079460000, \+448001234567"):
        await directory.remove_user("alice")
    assert (await directory.get_user("alice")).extension == "1001"
    await directory.remove_user("alice", force=True)
    assert await directory.list_users() == []
    assert [n.route for n in await directory.list_numbers()] == [None, None]


def test_realm_must_be_usable(database: Database) -> None:
    with pytest.raises(InvalidInput, match="realm"):
        DirectoryService(database, "")
    with pytest.raises(InvalidInput, match="realm"):
        DirectoryService(database, "a:b")
