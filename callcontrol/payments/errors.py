"""Payments' errors, under the project's tree (``callcontrol.errors``)::

CallControlError
 └── PaymentError
      ├── PaymentConfigError   a missing or rejected API key / webhook secret (also a ConfigError)
      ├── PaymentUnavailable   the provider cannot be reached; nothing was changed that matters
      ├── PaymentRejected      the provider refused the request: unknown customer or card, a card
      │                        that cannot be charged off-session, a payment in the wrong state
      ├── IdempotencyConflict  an idempotency key sent again with different parameters (a bug)
      └── WebhookRejected      a webhook whose signature, timestamp or body is not valid

A declined card is NOT an error: it is a ``Declined`` result (``payments.port``).
Messages never contain a card number, a client secret, an API key or a signing secret.
"""

from __future__ import annotations

from callcontrol.errors import ConfigError, PaymentError

__all__ = [
    "IdempotencyConflict",
    "PaymentConfigError",
    "PaymentError",
    "PaymentRejected",
    "PaymentUnavailable",
    "WebhookRejected",
]


class PaymentConfigError(PaymentError, ConfigError):
    error_id = "payment_config_error"


class PaymentUnavailable(PaymentError):
    error_id = "payment_unavailable"


class PaymentRejected(PaymentError):
    error_id = "payment_rejected"


class IdempotencyConflict(PaymentError):
    error_id = "idempotency_conflict"


class WebhookRejected(PaymentError):
    error_id = "webhook_rejected"
