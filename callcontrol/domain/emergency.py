"""Emergency numbers and service codes: digits that must never ring a colleague.

A user dialling 112 expects the emergency services. If 112 were also an extension,
the PBX would ring a colleague instead, so extensions may not be any of the codes
below (``domain.users.validate_extension``), and the call path can use
``is_emergency`` to send such calls to the carrier whatever the dialplan.

The deliberate rule: a user dialling an emergency number of the organisation's
``country`` setting is always put through the carrier trunk at once. Never refused
for credits, rates or a missing assigned number, never charged, never cut by the
credit limit; the caller ID is the user's default number, else the organisation's
``main_number``. The dialplan does it before any Stasis (``emergency_codes`` is what
``callcontrol pbx up`` writes into ``extensions_emergency.conf``), so it works while
the app is down; the app does the same should such a call reach it.

The list is data: one ``ServiceCode`` per code, with the countries where it is in
use (empty: every country). ``X`` in a code stands for any digit (``116XXX``, the
EU's harmonised numbers of social value). It is not exhaustive: it holds the codes
of the countries callcontrol is used in and the codes every mobile phone treats as
emergency (3GPP TS 22.101: 112 and 911 everywhere). Add a country's codes here.

Sources: ITU-T E.161.1 (112 and 911), the European Commission's decision
reserving the 116 range (2007/116/EC), the North American N11 codes, Ofcom's
National Telephone Numbering Plan (UK), and the national numbering plans.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CODES", "CodeKind", "ServiceCode", "emergency_codes", "is_emergency", "reserved_code"]


class CodeKind(StrEnum):
    EMERGENCY = "emergency"  # police, fire, ambulance, coast guard
    SERVICE = "service"  # non-emergency public services: directory, helplines


@dataclass(frozen=True, slots=True)
class ServiceCode:
    """A short code: ``digits`` (``X`` is any digit), where it applies, what it reaches."""

    digits: str
    kind: CodeKind
    what: str
    countries: frozenset[str] = frozenset()  # ISO 3166 alpha-2; empty: every country

    def matches(self, digits: str, country: str | None = None) -> bool:
        """Whether ``digits`` dialled in ``country`` (None: in any country) reach it."""
        if country is not None and self.countries and country.upper() not in self.countries:
            return False
        return len(digits) == len(self.digits) and all(
            want in ("X", got) for want, got in zip(self.digits, digits, strict=True)
        )

    def describe(self) -> str:
        """``emergency number 112 (emergency services, in every country)``."""
        where = ", ".join(sorted(self.countries)) if self.countries else "every country"
        kind = "emergency number" if self.kind is CodeKind.EMERGENCY else "service code"
        return f"{kind} {self.digits} ({self.what}, in {where})"


def _in(countries: str) -> frozenset[str]:
    return frozenset(countries.split())


_EMERGENCY = CodeKind.EMERGENCY
_SERVICE = CodeKind.SERVICE
_EU = _in("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK")

CODES: tuple[ServiceCode, ...] = (
    # every mobile phone treats 112 and 911 as emergency calls (3GPP TS 22.101)
    ServiceCode("112", _EMERGENCY, "emergency services"),
    ServiceCode("911", _EMERGENCY, "emergency services"),
    ServiceCode("999", _EMERGENCY, "emergency services", _in("GB IE HK MY SG BD MO PL")),
    ServiceCode("000", _EMERGENCY, "emergency services", _in("AU")),
    ServiceCode("111", _EMERGENCY, "emergency services", _in("NZ")),
    ServiceCode("110", _EMERGENCY, "police", _in("DE CN JP TW ID IR")),
    ServiceCode("119", _EMERGENCY, "fire and ambulance", _in("JP KR TW CN")),
    ServiceCode("120", _EMERGENCY, "ambulance", _in("CN")),
    ServiceCode("122", _EMERGENCY, "fire, traffic police", _in("AT CN EG")),
    ServiceCode("100", _EMERGENCY, "police, fire or ambulance", _in("IN GR IL BE")),
    ServiceCode("101", _EMERGENCY, "police, fire or ambulance", _in("IN IL BE")),
    ServiceCode("102", _EMERGENCY, "ambulance or fire", _in("IN IL")),
    ServiceCode("108", _EMERGENCY, "ambulance", _in("IN")),
    ServiceCode("113", _EMERGENCY, "police or ambulance", _in("IT NO")),
    ServiceCode("115", _EMERGENCY, "fire", _in("IT")),
    ServiceCode("117", _EMERGENCY, "police", _in("CH")),
    ServiceCode("118", _EMERGENCY, "ambulance or fire", _in("IT CH")),
    ServiceCode("133", _EMERGENCY, "police", _in("AT")),
    ServiceCode("144", _EMERGENCY, "ambulance", _in("AT CH")),
    ServiceCode("15", _EMERGENCY, "ambulance (SAMU)", _in("FR")),
    ServiceCode("17", _EMERGENCY, "police", _in("FR")),
    ServiceCode("18", _EMERGENCY, "fire", _in("FR")),
    ServiceCode("114", _EMERGENCY, "emergency services by text", _in("FR")),
    ServiceCode("190", _EMERGENCY, "police", _in("BR")),
    ServiceCode("192", _EMERGENCY, "ambulance", _in("BR")),
    ServiceCode("193", _EMERGENCY, "fire", _in("BR")),
    ServiceCode("995", _EMERGENCY, "fire and ambulance", _in("SG")),
    ServiceCode("10111", _EMERGENCY, "police", _in("ZA")),
    ServiceCode("10177", _EMERGENCY, "ambulance", _in("ZA")),
    # non-emergency services reached by a short code
    ServiceCode("116XXX", _SERVICE, "harmonised service of social value", _EU | _in("GB")),
    ServiceCode("118XXX", _SERVICE, "directory enquiries", _in("GB FR")),
    ServiceCode("101", _SERVICE, "police, non-emergency", _in("GB")),
    ServiceCode("105", _SERVICE, "power cuts", _in("GB")),
    ServiceCode("111", _SERVICE, "NHS urgent care", _in("GB")),
    ServiceCode("211", _SERVICE, "community services", _in("US CA")),
    ServiceCode("311", _SERVICE, "city services", _in("US CA")),
    ServiceCode("411", _SERVICE, "directory assistance", _in("US CA")),
    ServiceCode("511", _SERVICE, "traffic information", _in("US CA")),
    ServiceCode("611", _SERVICE, "telephone company repair", _in("US CA")),
    ServiceCode("711", _SERVICE, "relay service for the deaf", _in("US CA")),
    ServiceCode("811", _SERVICE, "call before you dig", _in("US CA")),
    ServiceCode("988", _SERVICE, "suicide and crisis lifeline", _in("US CA")),
)


def reserved_code(digits: str, country: str | None = None) -> ServiceCode | None:
    """The emergency number or service code ``digits`` is in ``country`` (None: in any
    country), emergency numbers first; None for ordinary digits."""
    found = [code for code in CODES if code.matches(digits, country)]
    found.sort(key=lambda code: code.kind is not CodeKind.EMERGENCY)
    return found[0] if found else None


def is_emergency(digits: str, country: str | None = None) -> bool:
    """Whether dialling ``digits`` in ``country`` (None: in any country) calls the
    emergency services."""
    return any(code.kind is CodeKind.EMERGENCY and code.matches(digits, country) for code in CODES)


def emergency_codes(country: str) -> list[ServiceCode]:
    """The emergency numbers a user in ``country`` may dial (those of every country
    first), one per digit string: what the dialplan sends straight to the carrier."""
    found: dict[str, ServiceCode] = {}
    for code in CODES:
        in_country = not code.countries or country.upper() in code.countries
        if code.kind is CodeKind.EMERGENCY and in_country:
            found.setdefault(code.digits, code)
    return list(found.values())
