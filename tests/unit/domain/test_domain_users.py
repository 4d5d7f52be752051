"""User rules: names, extensions, password strength, SIP digests."""

from __future__ import annotations

import hashlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.domain.users import (
    SipDigests,
    check_password,
    sip_digests,
    validate_extension,
    validate_user_name,
)
from callcontrol.errors import InvalidInput, WeakPassword


@pytest.mark.parametrize(
    ("text", "name"),
    [("alice", "alice"), ("Alice.Smith", "alice.smith"), (" bob_2-x ", "bob_2-x"), ("a", "a")],
)
def test_valid_user_names_are_lower_cased(text: str, name: str) -> None:
    assert validate_user_name(text) == name


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "required"),
        ("1alice", "start with a letter"),
        ("_alice", "start with a letter"),
        ("élodie", "start with a letter"),
        ("al ice", "only letters"),
        ("alice@example", "only letters"),
        ("a" * 65, "longer than 64"),
    ],
)
def test_invalid_user_names(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        validate_user_name(text)


@given(st.from_regex(r"[a-z][a-z0-9._-]{0,63}", fullmatch=True))
def test_every_name_of_the_alphabet_is_accepted(name: str) -> None:
    assert validate_user_name(name) == name


@given(st.text(min_size=1, max_size=70))
def test_accepted_names_always_follow_the_rules(text: str) -> None:
    try:
        name = validate_user_name(text)
    except InvalidInput:
        return
    assert 1 <= len(name) <= 64
    assert name[0] in string.ascii_lowercase
    assert set(name) <= set(string.ascii_lowercase + string.digits + "._-")


@pytest.mark.parametrize("text", ["10", "1001", "999999", " 42 "])
def test_valid_extensions(text: str) -> None:
    assert validate_extension(text) == text.strip()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0", "must not start with 0"),
        ("0101", "must not start with 0"),
        ("00", "must not start with 0"),
        ("1", "2 to 6 digits"),
        ("1234567", "2 to 6 digits"),
        ("+44", "digits only"),
        ("12a", "digits only"),
        ("١٢٣", "digits only"),  # Arabic-Indic digits
        ("", "digits only"),
    ],
)
def test_invalid_extensions(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        validate_extension(text)


def test_a_good_password_passes() -> None:
    check_password("correct horse battery", name="alice", extension="1001")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short1!", "at least 10 characters"),
        ("12345678901", "digits only"),
        ("aaaaaaaaaaaa", "different characters"),
        ("xxAlice-2024!", "user name"),
        ("my-1001-phone", "extension"),
        ("Password123", "most common"),
        ("qwertyuiop", "most common"),
        ("tab\tinside-pw", "control characters"),
        ("x" * 60 + "y" * 60 + "abcdefghij", "at most 128"),
    ],
)
def test_weak_passwords_say_why(password: str, reason: str) -> None:
    with pytest.raises(WeakPassword, match=reason):
        check_password(password, name="alice", extension="1001")


def test_weak_password_is_invalid_input() -> None:
    assert issubclass(WeakPassword, InvalidInput)


def test_digest_known_vector() -> None:
    digests = sip_digests("fred", "asterisk", "mypass")
    assert digests.md5 == "43a8d9be3da524f9a59ca0593d7b1b5d"
    assert digests.sha256 == hashlib.sha256(b"fred:asterisk:mypass").hexdigest()


def test_digests_stay_out_of_repr() -> None:
    digests = sip_digests("fred", "asterisk", "mypass")
    assert digests.md5 not in repr(digests)
    assert digests.sha256 not in repr(digests)


@given(
    st.from_regex(r"[1-9][0-9]{1,5}", fullmatch=True),
    st.text(min_size=1, max_size=20).filter(lambda s: ":" not in s),
    st.text(min_size=1, max_size=40),
)
def test_digests_are_ha1_of_username_realm_password(
    username: str, realm: str, password: str
) -> None:
    a1 = f"{username}:{realm}:{password}".encode()
    assert sip_digests(username, realm, password) == SipDigests(
        md5=hashlib.md5(a1).hexdigest(), sha256=hashlib.sha256(a1).hexdigest()
    )
