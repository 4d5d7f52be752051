"""The organisation's directory: users, numbers and each number's routing.

Plain frozen values, as the store hands them out; no ORM object leaves ``store/``.

Routing rules (DESIGN.md, "Words"): a number either rings one user, runs one IVR
flow, or has no route and then receives no calls.

Assignment is separate from routing: a number assigned to a user is one the user
may present when calling out (each user has at most one default). A number may be
routed to a flow and assigned to users at the same time. A suspended number (its
rent unpaid past the grace period) refuses incoming calls and is not presented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from callcontrol.domain.numbers import NumberType

__all__ = ["Assignment", "Number", "NumberState", "Route", "RouteKind", "User"]


class RouteKind(StrEnum):
    """What a number does with an incoming call."""

    USER = "user"
    FLOW = "flow"


class NumberState(StrEnum):
    """Whether a number is in service: suspended numbers refuse calls."""

    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class Assignment:
    """A user who may present the number; ``default``: the one they present."""

    user_name: str
    default: bool = False


@dataclass(frozen=True, slots=True)
class User:
    """A person with a SIP endpoint; the endpoint (SIP username) is the extension."""

    id: int
    name: str
    extension: str
    digest_md5: str = field(repr=False)
    digest_sha256: str = field(repr=False)
    realm: str


@dataclass(frozen=True, slots=True)
class Route:
    """A number's routing: ring ``user_name`` (at ``user_extension``) or run ``flow_name``."""

    kind: RouteKind
    user_name: str | None = None
    user_extension: str | None = None
    flow_name: str | None = None

    def __post_init__(self) -> None:
        if self.kind is RouteKind.USER:
            if self.user_name is None or self.flow_name is not None:
                raise ValueError("a user route names a user and no flow")
        elif self.flow_name is None or self.user_name is not None:
            raise ValueError("a flow route names a flow and no user")


@dataclass(frozen=True, slots=True)
class Number:
    """A number the organisation owns, with its routing (None: receives no calls), its
    assignments, and its rent (``monthly`` micro-credits, paid until ``paid_until``;
    None: no rent, a number an operator added outside the catalogue)."""

    e164: str
    country: str
    number_type: NumberType
    route: Route | None = None
    state: NumberState = NumberState.ACTIVE
    monthly: int = 0
    paid_until: datetime | None = None
    assigned: tuple[Assignment, ...] = ()

    @property
    def needs_routing(self) -> bool:
        return self.route is None
