"""Emergency numbers and service codes: per country, and never an extension."""

from __future__ import annotations

import pytest

from callcontrol.domain.emergency import CODES, CodeKind, is_emergency, reserved_code
from callcontrol.domain.users import validate_extension
from callcontrol.errors import InvalidInput


@pytest.mark.parametrize(
    ("digits", "country", "expected"),
    [
        ("112", None, True),
        ("112", "US", True),  # every mobile phone: 3GPP
        ("911", "GB", True),
        ("999", "GB", True),
        ("999", "US", False),
        ("999", None, True),
        ("000", "AU", True),
        ("110", "DE", True),
        ("110", "GB", False),
        ("15", "FR", True),
        ("15", "gb", False),
        ("411", "US", False),  # a service code, not an emergency
        ("1001", None, False),
        ("1120", None, False),  # exact digits only: 1120 is an ordinary extension
    ],
)
def test_is_emergency(digits: str, country: str | None, expected: bool) -> None:
    assert is_emergency(digits, country) is expected


def test_service_codes_with_wildcards() -> None:
    code = reserved_code("116111", "DE")
    assert code is not None and code.kind is CodeKind.SERVICE
    assert reserved_code("116111", "US") is None
    assert reserved_code("11611", None) is None
    assert reserved_code("118118", "GB") is not None


def test_an_emergency_number_wins_over_a_service_code() -> None:
    code = reserved_code("111")  # NZ emergency, GB NHS 111
    assert code is not None and code.kind is CodeKind.EMERGENCY
    gb = reserved_code("111", "GB")
    assert gb is not None and gb.kind is CodeKind.SERVICE


def test_the_list_is_well_formed() -> None:
    for code in CODES:
        assert code.digits.isascii() and all(c.isdigit() or c == "X" for c in code.digits)
        assert all(len(country) == 2 and country.isupper() for country in code.countries)
        assert code.what


@pytest.mark.parametrize("extension", ["112", "911", "999", "110", "118", "15", "411", "116000"])
def test_no_extension_is_an_emergency_or_service_code(extension: str) -> None:
    with pytest.raises(InvalidInput, match=f"extension {extension} is the "):
        validate_extension(extension)


@pytest.mark.parametrize("extension", ["1001", "1120", "9110", "20", "116"])
def test_ordinary_extensions_stay_valid(extension: str) -> None:
    assert validate_extension(extension) == extension
