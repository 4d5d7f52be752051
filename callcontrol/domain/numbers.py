"""Phone numbers: parsing to E.164, number types and countries.

Every number the product stores or compares is in E.164 form (``+442079460000``).
Admins may type spaces, dashes, dots and parentheses; the country code is
required (a leading ``+``), since a number without one names no country.
``phonenumbers`` (Google's libphonenumber metadata) decides validity and type.

Parsing costs about 0.1 ms a number and every call parses the number it rates, so
the string-valued answers are remembered (``NUMBER_CACHE`` numbers each: they are
pure functions of the text and the library's metadata; a refusal is never cached).
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from callcontrol.domain.text import shown
from callcontrol.errors import InvalidInput

__all__ = [
    "NumberType",
    "check_country",
    "infer_number_type",
    "number_country",
    "parse_e164",
    "possible_types",
]


class NumberType(StrEnum):
    """The type of a number the organisation owns; rates depend on it."""

    LOCAL = "local"
    NATIONAL = "national"
    MOBILE = "mobile"
    TOLL_FREE = "toll_free"


# What an admin may type: "+", digits and the usual separators, nothing else
# (no vanity letters, no "ext. 12").
_TYPED_NUMBER = re.compile(r"\+[0-9 ()./-]*")
_MAX_E164_DIGITS = 15

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}

_TYPE_MAP = {
    PhoneNumberType.FIXED_LINE: NumberType.LOCAL,
    PhoneNumberType.FIXED_LINE_OR_MOBILE: NumberType.LOCAL,
    PhoneNumberType.MOBILE: NumberType.MOBILE,
    PhoneNumberType.TOLL_FREE: NumberType.TOLL_FREE,
}


NUMBER_CACHE = 4096


def _parse(text: str) -> phonenumbers.PhoneNumber:
    stripped = text.strip()
    if not stripped:
        raise InvalidInput("a phone number is required")
    if not stripped.startswith("+"):
        raise InvalidInput(
            f"{shown(text)} is not in international form: start with + and the country code "
            "(e.g. +44 20 7946 0000)"
        )
    if not _TYPED_NUMBER.fullmatch(stripped):
        raise InvalidInput(
            f"{shown(text)} may contain only +, digits, spaces and the separators ( ) . / -"
        )
    digits = sum(ch.isdigit() for ch in stripped)
    if digits == 0:
        raise InvalidInput(f"{shown(text)} is not a phone number: it has no digits")
    if digits > _MAX_E164_DIGITS:
        raise InvalidInput(f"{shown(text)} has {digits} digits; E.164 allows at most 15")
    try:
        number = phonenumbers.parse(stripped, None)
    except NumberParseException as exc:
        reason = _PARSE_REASONS.get(exc.error_type, "cannot be parsed")
        raise InvalidInput(f"{shown(text)} is not a phone number: {reason}") from exc
    if not phonenumbers.is_valid_number(number):
        region = phonenumbers.region_code_for_country_code(number.country_code or 0)
        if region == phonenumbers.UNKNOWN_REGION:
            raise InvalidInput(f"{shown(text)} is not a phone number: unknown country code")
        raise InvalidInput(
            f"{shown(text)} is not a valid number of country code +{number.country_code} "
            f"({region}): wrong length or unassigned range"
        )
    return number


@lru_cache(maxsize=NUMBER_CACHE)
def parse_e164(text: str) -> str:
    """Return ``text`` as E.164 (``+442079460000``); InvalidInput says why not."""
    return str(phonenumbers.format_number(_parse(text), PhoneNumberFormat.E164))


@lru_cache(maxsize=NUMBER_CACHE)
def infer_number_type(e164: str) -> NumberType:
    """The number's type by its range: fixed -> local, mobile, toll-free, else national.

    Shared-cost, UAN, VoIP, personal and other non-geographic ranges are national.
    """
    return _TYPE_MAP.get(phonenumbers.number_type(_parse(e164)), NumberType.NATIONAL)


@lru_cache(maxsize=NUMBER_CACHE)
def possible_types(e164: str) -> frozenset[NumberType]:
    """The types the number may be sold as: its inferred type; a range phonenumbers
    cannot tell fixed from mobile (as in North America) may be local or mobile."""
    kind = phonenumbers.number_type(_parse(e164))
    if kind == PhoneNumberType.FIXED_LINE_OR_MOBILE:
        return frozenset({NumberType.LOCAL, NumberType.MOBILE})
    return frozenset({_TYPE_MAP.get(kind, NumberType.NATIONAL)})


def check_country(text: str) -> str:
    """An ISO 3166-1 alpha-2 code phonenumbers knows (``gb`` -> ``GB``); InvalidInput
    says why not."""
    code = text.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidInput(
            f"unknown country {shown(text)}: give an ISO 3166 two-letter code such as GB, US, DE"
        )
    return code


@lru_cache(maxsize=NUMBER_CACHE)
def number_country(e164: str) -> str:
    """ISO 3166-1 alpha-2 region of the number (``GB``), ``001`` for global services."""
    number = _parse(e164)
    region = phonenumbers.region_code_for_number(number)
    if region is None:  # pragma: no cover - a valid number always has a region
        raise InvalidInput(f"{shown(e164)} belongs to no country")
    return str(region)
