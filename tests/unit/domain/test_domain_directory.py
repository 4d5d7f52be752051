"""Directory values: a route names exactly its target."""

from __future__ import annotations

import pytest

from callcontrol.domain.directory import Number, Route, RouteKind, User
from callcontrol.domain.numbers import NumberType


def test_user_route_and_flow_route() -> None:
    assert Route(RouteKind.USER, user_name="alice", user_extension="1001").flow_name is None
    assert Route(RouteKind.FLOW, flow_name="main").user_name is None


@pytest.mark.parametrize(
    "arguments",
    [
        {"kind": RouteKind.USER},
        {"kind": RouteKind.USER, "user_name": "alice", "flow_name": "main"},
        {"kind": RouteKind.FLOW},
        {"kind": RouteKind.FLOW, "user_name": "alice", "flow_name": "main"},
    ],
)
def test_route_with_the_wrong_target_is_refused(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="names"):
        Route(**arguments)  # type: ignore[arg-type]


def test_number_without_route_receives_no_calls() -> None:
    number = Number("+442079460000", "GB", NumberType.LOCAL)
    assert number.route is None


def test_user_repr_hides_digests() -> None:
    user = User(1, "alice", "1001", "a" * 32, "b" * 64, "callcontrol")
    assert "a" * 32 not in repr(user)
    assert "b" * 64 not in repr(user)
