"""The project's exceptions: one root, a short tree.

    CallControlError
     ├── ConfigError            a setting is unknown, mistyped or out of range
     ├── InvalidInput           bad input from an admin (number, name, password, ...)
     │    ├── WeakPassword
     │    ├── FlowValidationError   ivr/: every error of a flow file, file:line:col
     │    └── RatesFileError        billing/: every error of a rate file, file:line
     ├── NotFound               an unknown user, number, ...
     │    └── NoRate            billing/: no rate prices the call (never free)
     ├── Conflict               a duplicate extension, name or number
     │    ├── InsufficientCredits   billing/: the wallet cannot pay
     │    └── ChargeRefused         billing/: a charge beyond hold + available
     ├── StoreError             the database failed or cannot be reached
     ├── AriError               Asterisk's REST interface failed
     │    ├── AriUnavailable    cannot connect / timed out
     │    ├── AriHttpError      answered with an HTTP error (status, body)
     │    │    └── AriNotFound  404: the channel/bridge/object is gone
     │    ├── AriApplicationReplaced   ari/: another process took the Stasis app
     │    └── ChannelEventsClosed      ari/: a channel's event stream ended
     ├── AmiError               ami/: Asterisk's manager interface failed
     │    ├── AmiUnavailable    cannot connect, timed out, or the connection closed
     │    └── AmiLoginRefused   the PBX refused our AMI user name or secret
     ├── PbxError               the development PBX could not be provisioned or run
     ├── PaymentError           payments/: the payment provider failed or refused a request
     │    ├── PaymentConfigError    a missing or rejected API key / webhook secret
     │    ├── PaymentUnavailable    cannot reach the provider (no money can have moved)
     │    ├── PaymentRejected       the provider refused the request (unknown card, bad state)
     │    ├── IdempotencyConflict   an idempotency key reused for a different request
     │    └── WebhookRejected       a webhook's signature, age or body is not valid
     └── TtsError, GraphError   ivr/: espeak-ng or graphviz missing or failing

Adapters translate library errors into these with ``raise ... from exc``; the CLI
prints ``error: <message>`` and exits non-zero. Each class names a stable
``error_id``, for the HTTP API (the console issue) to report with a status.
"""

from __future__ import annotations


class CallControlError(Exception):
    """Root of every error the project raises on purpose."""

    error_id = "callcontrol_error"


class ConfigError(CallControlError):
    error_id = "config_error"


class InvalidInput(CallControlError):
    error_id = "invalid_input"


class WeakPassword(InvalidInput):
    error_id = "weak_password"


class NotFound(CallControlError):
    error_id = "not_found"


class Conflict(CallControlError):
    error_id = "conflict"


class StoreError(CallControlError):
    error_id = "store_error"


class AriError(CallControlError):
    error_id = "ari_error"


class AriUnavailable(AriError):
    error_id = "ari_unavailable"


class AriHttpError(AriError):
    error_id = "ari_http_error"

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"ARI {method} {path} answered {status}: {body[:200]}")
        self.method = method
        self.path = path
        self.status = status
        self.body = body


class AriNotFound(AriHttpError):
    error_id = "ari_not_found"


class AmiError(CallControlError):
    error_id = "ami_error"


class AmiUnavailable(AmiError):
    error_id = "ami_unavailable"


class AmiLoginRefused(AmiError):
    error_id = "ami_login_refused"


class PbxError(CallControlError):
    error_id = "pbx_error"


class PaymentError(CallControlError):
    """The payment provider failed or refused a request (subclasses in ``payments/errors.py``)."""

    error_id = "payment_error"
