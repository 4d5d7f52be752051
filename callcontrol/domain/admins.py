"""Console administrators and the audit log of what they did: values and rules.

An admin signs in to the console with a name and a password (stored only as an
argon2 hash) or calls the API with a bearer token (stored only as its SHA-256).
Every change an admin makes is one ``AuditEntry``: who, what, on what, when.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from callcontrol.errors import InvalidInput, WeakPassword

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "Admin",
    "AuditEntry",
    "check_admin_password",
    "validate_admin_name",
]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
_NAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class Admin:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    admin: str
    action: str  # e.g. number.route, user.add, flow.save
    target: str  # what it was done to: a number, a user name, a flow name
    details: str


def validate_admin_name(name: str) -> str:
    """1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter."""
    text = name.strip()
    if not _NAME.fullmatch(text):
        raise InvalidInput(
            f"admin name {name!r} must be 1-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter"
        )
    return text


def check_admin_password(password: str, *, name: str) -> None:
    """WeakPassword unless the password is long enough and not the name itself."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"an admin password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"an admin password has at most {MAX_PASSWORD_LENGTH} characters")
    if name.lower() in password.lower():
        raise WeakPassword("an admin password must not contain the admin's name")
