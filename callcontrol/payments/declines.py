"""Card decline codes (Stripe's vocabulary, also used by the offline provider) to ``Declined``.

Soft declines may pay later with the same card (``retryable``); hard declines must not be
retried automatically (``hard``): the card is gone, refused for good, or the issuer said so.
``authentication_required`` is not here: it is a ``NeedsCustomer`` (see ``port``).
An unknown code is treated as soft but not retryable: a person looks before anyone retries.
See https://docs.stripe.com/declines/codes.
"""

from __future__ import annotations

from callcontrol.payments.port import Declined

__all__ = ["AUTHENTICATION_REQUIRED", "declined"]

AUTHENTICATION_REQUIRED = frozenset({"authentication_required", "card_authentication_required"})

SOFT = frozenset(
    {
        "approve_with_id",
        "card_declined",
        "card_velocity_exceeded",
        "generic_decline",
        "insufficient_funds",
        "issuer_not_available",
        "processing_error",
        "reenter_transaction",
        "try_again_later",
        "withdrawal_count_limit_exceeded",
    }
)

HARD = frozenset(
    {
        "account_closed",
        "call_issuer",
        "card_not_supported",
        "currency_not_supported",
        "do_not_honor",
        "do_not_try_again",
        "do_not_retry",
        "expired_card",
        "fraudulent",
        "incorrect_cvc",
        "incorrect_number",
        "invalid_account",
        "invalid_cvc",
        "invalid_expiry_month",
        "invalid_expiry_year",
        "invalid_number",
        "lost_card",
        "merchant_blacklist",
        "new_account_information_available",
        "no_action_taken",
        "not_permitted",
        "pickup_card",
        "restricted_card",
        "revocation_of_all_authorizations",
        "revocation_of_authorization",
        "security_violation",
        "service_not_allowed",
        "stolen_card",
        "stop_payment_order",
        "transaction_not_allowed",
    }
)


def declined(code: str, message: str, payment_id: str | None = None) -> Declined:
    """The ``Declined`` result for a decline code (``decline_code`` first, else ``code``)."""
    if code in HARD:
        return Declined(code, message, retryable=False, hard=True, payment_id=payment_id)
    return Declined(code, message, retryable=code in SOFT, hard=False, payment_id=payment_id)
