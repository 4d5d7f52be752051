"""Users: names, extensions, password rules and SIP digests.

A user's SIP username is their extension: their phone registers as ``1001``.
The plain password is never stored; only the two SIP digest hashes (HA1)
``H(extension:realm:password)`` with MD5 (RFC 2617) and SHA-256 (RFC 7616/8760),
which is all Asterisk needs to authenticate the phone. Because the realm is part
of the hash, changing the realm requires setting every password again.

Extensions are 2 to 6 digits and never start with 0, so that nothing a user
dials internally can be mistaken for an outside number (``+...`` or ``00...``)
or a national trunk prefix (``0...``), and are none of the emergency numbers and
service codes of ``callcontrol.domain.emergency`` (112, 911, 999, ...): dialling those
must reach the service, not a colleague.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from callcontrol.domain.emergency import reserved_code
from callcontrol.domain.text import shown
from callcontrol.errors import InvalidInput, WeakPassword

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "SipDigests",
    "check_password",
    "sip_digests",
    "validate_extension",
    "validate_user_name",
]

MAX_NAME_LENGTH = 64
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128
MIN_DISTINCT_CHARACTERS = 4

_NAME = re.compile(r"[a-z][a-z0-9._-]*")
_EXTENSION = re.compile(r"[1-9][0-9]{1,5}")

# Passwords that are long enough and still among the first tried by SIP scanners.
_COMMON_PASSWORDS = frozenset(
    {
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "abc1234567",
        "abcdefghij",
        "administrator",
        "asdfghjkl1",
        "asdfghjkl;",
        "asterisk123",
        "callcontrol",
        "callcontrol1",
        "changeme123",
        "football123",
        "freepbx123",
        "iloveyou12",
        "letmein123",
        "p@ssw0rd123",
        "passw0rd123",
        "password12",
        "password123",
        "password1234",
        "princess123",
        "q1w2e3r4t5",
        "qwerty1234",
        "qwerty12345",
        "qwertyuiop",
        "qwertyuiop1",
        "secret1234",
        "sunshine123",
        "superman123",
        "trustno1234",
        "welcome123",
        "zaq12wsxcde",
    }
)


@dataclass(frozen=True, slots=True)
class SipDigests:
    """HA1 digests of one SIP credential, lower-case hex. Secret: kept out of repr."""

    md5: str = field(repr=False)
    sha256: str = field(repr=False)


def validate_user_name(text: str) -> str:
    """Return the user name lower-cased; InvalidInput when it breaks the rules.

    1 to 64 characters of a-z, 0-9, ``.``, ``_``, ``-``, starting with a letter.
    """
    name = text.strip().lower()
    if not name:
        raise InvalidInput("a user name is required")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"user name {shown(text)} is longer than {MAX_NAME_LENGTH} characters")
    if not name[0].isascii() or not name[0].isalpha():
        raise InvalidInput(f"user name {shown(text)} must start with a letter a-z")
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"user name {shown(text)} may contain only letters a-z, digits and . _ -"
        )
    return name


def validate_extension(text: str) -> str:
    """Return the extension; InvalidInput unless it is 2-6 digits not starting with 0
    and not an emergency number or service code (in any country)."""
    extension = text.strip()
    if not extension.isascii() or not extension.isdigit():
        raise InvalidInput(f"extension {shown(text)} must be digits only")
    if extension.startswith("0"):
        raise InvalidInput(
            f"extension {shown(text)} must not start with 0 (0 and 00 start outside numbers)"
        )
    if not _EXTENSION.fullmatch(extension):
        raise InvalidInput(f"extension {shown(text)} must have 2 to 6 digits")
    code = reserved_code(extension)
    if code is not None:
        raise InvalidInput(
            f"extension {extension} is the {code.describe()}: a user dialling it must "
            "reach that service, not a colleague; choose another extension"
        )
    return extension


def check_password(password: str, *, name: str, extension: str) -> None:
    """Raise WeakPassword, with the reason, unless the password is strong enough."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"password must have at most {MAX_PASSWORD_LENGTH} characters")
    if not password.isprintable():
        raise WeakPassword("password must not contain control characters")
    if password.isdigit():
        raise WeakPassword("password must not be digits only")
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        raise WeakPassword(
            f"password must use at least {MIN_DISTINCT_CHARACTERS} different characters"
        )
    lowered = password.lower()
    if name and name.lower() in lowered:
        raise WeakPassword("password must not contain the user name")
    if extension and extension in password:
        raise WeakPassword("password must not contain the extension")
    if lowered in _COMMON_PASSWORDS:
        raise WeakPassword("password is one of the most common passwords")


def sip_digests(username: str, realm: str, password: str) -> SipDigests:
    """HA1 = H(username:realm:password) in MD5 and SHA-256, lower-case hex."""
    a1 = f"{username}:{realm}:{password}".encode()
    return SipDigests(md5=hashlib.md5(a1).hexdigest(), sha256=hashlib.sha256(a1).hexdigest())
