"""``OfflineState`` to JSON and back, so the offline provider's memory can live in a database.

Plain data only: the answers kept for idempotency keys and the payments' statuses are
tagged with their class name; the fingerprints of requests (nested tuples) come back as
tuples, so a request sent again after a restart is recognised as the same request.
"""

from __future__ import annotations

import base64
import json
from dataclasses import fields
from typing import Any, cast

from callcontrol.payments.offline_state import (
    OfflineCustomer,
    OfflinePayment,
    OfflineSetup,
    OfflineState,
    OfflineStoredMethod,
    Replay,
    SignedWebhook,
)
from callcontrol.payments.port import (
    CardSetup,
    Checkout,
    Declined,
    NeedsCustomer,
    PaymentMethod,
    PaymentMethodKind,
    PaymentStatus,
    Pending,
    Succeeded,
    Unknown,
)

__all__ = ["decode_state", "encode_state"]

_TAGGED: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (Succeeded, Declined, NeedsCustomer, Unknown, Pending, Checkout, CardSetup)
}


def _tag(value: Any) -> dict[str, Any]:
    return {"t": type(value).__name__, **{f.name: getattr(value, f.name) for f in fields(value)}}


def _untag(data: dict[str, Any]) -> Any:
    values = dict(data)
    return _TAGGED[values.pop("t")](**values)


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def _method(data: dict[str, Any]) -> PaymentMethod:
    return PaymentMethod(**data)


def encode_state(state: OfflineState) -> str:
    data = {
        "customers": {key: _plain(c) for key, c in state.customers.items()},
        "methods": {
            key: {
                "method": _plain(m.method),
                "customer_id": m.customer_id,
                "test_card": m.test_card,
                "attached": m.attached,
            }
            for key, m in state.methods.items()
        },
        "setups": {
            key: {"setup": _tag(s.setup), "customer_id": s.customer_id, "method_ref": s.method_ref}
            for key, s in state.setups.items()
        },
        "payments": {
            key: {
                **{f.name: getattr(p, f.name) for f in fields(p) if f.name not in _SPECIAL},
                "metadata": dict(p.metadata),
                "kinds": sorted(p.kinds),
                "status": _tag(p.status),
            }
            for key, p in state.payments.items()
        },
        "replays": {
            key: {"fingerprint": r.fingerprint, "answer": _tag(r.answer)}
            for key, r in state.replays.items()
        },
        "outbox": [
            {"body": base64.b64encode(w.body).decode(), "headers": dict(w.headers)}
            for w in state.outbox
        ],
        "next_number": state.next_number,
    }
    return json.dumps(data, separators=(",", ":"))


_SPECIAL = frozenset({"metadata", "kinds", "status"})


def _plain(value: Any) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in fields(value)}


def decode_state(text: str) -> OfflineState:
    data: dict[str, Any] = json.loads(text or "{}")
    state = OfflineState(next_number=int(data.get("next_number", 1)))
    for key, c in data.get("customers", {}).items():
        state.customers[key] = OfflineCustomer(**c)
    for key, m in data.get("methods", {}).items():
        state.methods[key] = OfflineStoredMethod(
            _method(m["method"]), m["customer_id"], m["test_card"], m["attached"]
        )
    for key, s in data.get("setups", {}).items():
        state.setups[key] = OfflineSetup(_untag(s["setup"]), s["customer_id"], s["method_ref"])
    for key, p in data.get("payments", {}).items():
        plain = {k: v for k, v in p.items() if k not in _SPECIAL}
        state.payments[key] = OfflinePayment(
            **plain,
            metadata=dict(p["metadata"]),
            kinds=frozenset(cast(list[PaymentMethodKind], p["kinds"])),
            status=cast(PaymentStatus, _untag(p["status"])),
        )
    for key, r in data.get("replays", {}).items():
        state.replays[key] = Replay(_tuples(r["fingerprint"]), _untag(r["answer"]))
    for w in data.get("outbox", []):
        state.outbox.append(SignedWebhook(base64.b64decode(w["body"]), dict(w["headers"])))
    return state
