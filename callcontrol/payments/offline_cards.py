"""The offline provider's test cards: a name, Stripe's well-known test number, a behaviour.

An admin (or a test) adds a card by its name (``visa``, ``declined``...) or by the
published Stripe test number; anything else is refused without being echoed, so a real
card number typed by mistake is neither stored nor logged. Only brand, last four digits
and expiry are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from callcontrol.errors import InvalidInput
from callcontrol.payments.port import PaymentMethod, PaymentMethodKind

__all__ = ["TEST_CARDS", "Behaviour", "TestCard", "find_test_card"]

Behaviour = Literal[
    "succeed",
    "decline",
    "insufficient_funds",
    "expired",
    "authentication_required",
    "timeout_after_charge",
]

EXP_MONTH = 12
EXP_YEAR = 2034


@dataclass(frozen=True, slots=True)
class TestCard:
    __test__ = False  # not a pytest test class

    name: str
    number: str | None  # Stripe's published test number; None when Stripe has no equivalent
    brand: str
    behaviour: Behaviour
    kind: PaymentMethodKind = "card"

    def saved_as(self, provider_ref: str) -> PaymentMethod:
        """The saved method for this card: brand, last four and expiry, never the number."""
        last4 = self.number[-4:] if self.number else "0000"
        if self.kind != "card":
            return PaymentMethod(provider_ref, self.kind, self.brand, last4, None, None)
        return PaymentMethod(provider_ref, self.kind, self.brand, last4, EXP_MONTH, EXP_YEAR)


TEST_CARDS: tuple[TestCard, ...] = (
    TestCard("visa", "4242424242424242", "visa", "succeed"),
    TestCard("mastercard", "5555555555554444", "mastercard", "succeed"),
    TestCard("declined", "4000000000000341", "visa", "decline"),
    TestCard("insufficient_funds", "4000000000009995", "visa", "insufficient_funds"),
    TestCard("expired", "4000000000000069", "visa", "expired"),
    TestCard("authentication_required", "4000002760003184", "visa", "authentication_required"),
    TestCard("timeout_after_charge", None, "visa", "timeout_after_charge"),
    TestCard("bank_transfer", None, "bank_transfer", "succeed", kind="bank_transfer"),
)


def find_test_card(name_or_number: str) -> TestCard:
    """The test card for a name or a test number (spaces and dashes ignored), else raise."""
    wanted = name_or_number.strip().lower()
    digits = wanted.replace(" ", "").replace("-", "")
    for card in TEST_CARDS:
        if wanted == card.name or (card.number is not None and digits == card.number):
            return card
    names = ", ".join(card.name for card in TEST_CARDS)
    raise InvalidInput(
        f"not an offline test card; give one of: {names} (or its Stripe test number). "
        "The offline provider never takes a real card number."
    )
