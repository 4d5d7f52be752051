"""Phone numbers: E.164 parsing, types and countries."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.domain.numbers import NumberType, infer_number_type, number_country, parse_e164
from callcontrol.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        ("+44 20 7946 0000", "+442079460000"),
        ("+442079460000", "+442079460000"),
        ("  +44 (20) 7946-0000 ", "+442079460000"),
        ("+1 212.555.0100", "+12125550100"),
        ("+33 1 23 45 67 89", "+33123456789"),
    ],
)
def test_parse_e164_accepts_international_forms(text: str, e164: str) -> None:
    assert parse_e164(text) == e164


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "required"),
        ("020 7946 0000", "international form"),
        ("0044 20 7946 0000", "international form"),
        ("+1-800-FLOWERS", "only +, digits"),
        ("+44 20 7946 0000 ext 12", "only +, digits"),
        ("+44 20 7946 000", "not a valid number"),
        ("+999 1234 5678", "unknown country code"),
        ("+44 1234 5678 9012 3456", "at most 15"),
        ("+", "not a phone number"),
    ],
)
def test_parse_e164_rejects_and_says_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(reason)):
        parse_e164(text)


@pytest.mark.parametrize(
    ("e164", "number_type", "country"),
    [
        ("+442079460000", NumberType.LOCAL, "GB"),  # FIXED_LINE
        ("+12125550100", NumberType.LOCAL, "US"),  # FIXED_LINE_OR_MOBILE
        ("+447400123456", NumberType.MOBILE, "GB"),
        ("+448001234567", NumberType.TOLL_FREE, "GB"),
        ("+18005550100", NumberType.TOLL_FREE, "US"),
        ("+443001234567", NumberType.NATIONAL, "GB"),  # UAN
        ("+445612345678", NumberType.NATIONAL, "GB"),  # VOIP
        ("+448701234567", NumberType.NATIONAL, "GB"),  # SHARED_COST
    ],
)
def test_type_and_country(e164: str, number_type: NumberType, country: str) -> None:
    assert infer_number_type(e164) is number_type
    assert number_country(e164) == country


def test_type_of_an_invalid_number_is_refused() -> None:
    with pytest.raises(InvalidInput):
        infer_number_type("+4412")


def _examples() -> list[phonenumbers.PhoneNumber]:
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number(region)
        if example is not None:
            found.append(example)
    return found


_FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
]


@given(st.sampled_from(_examples()), st.sampled_from(_FORMATS))
def test_every_region_example_round_trips(number: phonenumbers.PhoneNumber, form: int) -> None:
    typed = phonenumbers.format_number(number, form)
    e164 = parse_e164(typed)
    assert e164 == phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    assert parse_e164(e164) == e164
    assert isinstance(infer_number_type(e164), NumberType)
    assert number_country(e164) == phonenumbers.region_code_for_number(number)


@given(st.text(alphabet="0123456789 -", max_size=20))
def test_without_plus_is_never_accepted(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_e164(text)


def test_answers_are_remembered_and_refusals_are_not() -> None:
    """Every call rates its number: the parse is remembered by the text; a bad number
    is refused every time (never remembered as an answer)."""
    parse_e164.cache_clear()
    assert parse_e164("+44 20 7946 0000") == parse_e164("+44 20 7946 0000") == "+442079460000"
    assert parse_e164.cache_info().hits == 1
    for _ in range(2):
        with pytest.raises(InvalidInput, match="not a valid number"):
            parse_e164("+44 20")
    assert parse_e164.cache_info().currsize == 1
