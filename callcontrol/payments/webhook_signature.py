"""Stripe-style webhook signatures, for the offline provider.

The header is ``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``,
keyed with the endpoint's signing secret, exactly as Stripe signs (so Stripe's own verifier
accepts what ``sign`` makes). ``verify`` compares in constant time and refuses a timestamp
outside the tolerance, which stops replays of an old, validly signed request.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from callcontrol.payments.errors import WebhookRejected

__all__ = ["SIGNATURE_HEADER", "header_value", "sign", "verify"]

SIGNATURE_HEADER = "Stripe-Signature"


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever its case (a plain dict is case-sensitive, HTTP is not)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _mac(body: bytes, secret: str, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_mac(body, secret, timestamp)}"


def verify(body: bytes, header: str | None, secret: str, tolerance: int, now: int) -> int:
    """The signed timestamp if ``header`` signs ``body`` recently enough, else raise."""
    if not header:
        raise WebhookRejected(f"the webhook has no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookRejected(f"the webhook's {SIGNATURE_HEADER} header is malformed")
    expected = _mac(body, secret, timestamp)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookRejected("the webhook's signature does not match its body")
    if abs(now - timestamp) > tolerance:
        raise WebhookRejected(
            f"the webhook was signed {now - timestamp} s ago, beyond the {tolerance} s tolerance"
        )
    return timestamp
