"""Whom a call rings, and the dialled number as the carrier sends it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Callee", "normalise_dialled"]


@dataclass(frozen=True)
class Callee:
    """Whom a call rings: a name for records and logs, and where to dial.

    A user's phone by extension (``PJSIP/1001``), or an outside number through the
    carrier trunk (``PJSIP/+4930123456@carrier``).
    """

    name: str
    extension: str = ""
    number: str = ""  # an outside number, dialled through the carrier

    @property
    def endpoint(self) -> str:
        return f"PJSIP/{self.number}@carrier" if self.number else f"PJSIP/{self.extension}"


def normalise_dialled(exten: str) -> str:
    """The carrier sends the dialled number with or without '+' (or with 00)."""
    digits = exten.strip()
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not digits.startswith("+"):
        digits = "+" + digits
    return digits
