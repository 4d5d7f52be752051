"""Billing's errors, under the project's tree (``callcontrol.errors``)::

CallControlError
 ├── InvalidInput
 │    └── RatesFileError     a rate file has errors (every one, with file:line[:col])
 ├── NotFound
 │    └── NoRate             no rate prices this call: it is refused, never free
 └── Conflict
      ├── InsufficientCredits  a debit/adjustment would make ``available`` negative
      └── ChargeRefused        a call charge exceeds the call's hold + available
"""

from __future__ import annotations

from collections.abc import Sequence

from callcontrol.errors import Conflict, InvalidInput, NotFound

__all__ = ["ChargeRefused", "InsufficientCredits", "NoRate", "RatesFileError"]

_SHOWN = 20


class RatesFileError(InvalidInput):
    """Every problem found in a rate file; nothing was imported."""

    error_id = "rates_file_error"

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        shown = self.errors[:_SHOWN]
        more = len(self.errors) - len(shown)
        lines = [f"the rate file has {len(self.errors)} error(s); nothing was imported", *shown]
        if more:
            lines.append(f"... and {more} more")
        super().__init__("\n  ".join(lines))


class NoRate(NotFound):
    error_id = "no_rate"


class InsufficientCredits(Conflict):
    error_id = "insufficient_credits"


class ChargeRefused(Conflict):
    error_id = "charge_refused"
