"""Run localstripe (PyPI) on 127.0.0.1:<port>, in memory: ``python localstripe_server.py PORT``.

localstripe was written for older Stripe API versions. The SDK we pin (stripe 16) speaks
API version 2026-10-28.endive, where PaymentIntents and SetupIntents take
``allowed_payment_method_types`` (``payment_method_types`` is no longer writable) and
where a PaymentIntent has a ``description``, which localstripe refuses. This launcher
teaches localstripe exactly those fields of the real API, and nothing else:

- PaymentIntent: ``description`` is kept and returned; ``allowed_payment_method_types``
  is read as localstripe's ``payment_method_types``.
- SetupIntent: ``allowed_payment_method_types`` likewise.
- The store stays in memory (localstripe otherwise pickles it to /tmp/localstripe.pickle,
  a path shared with anything else on the machine).
"""

from __future__ import annotations

import sys
from typing import Any

from aiohttp import web
from localstripe import resources, server


def accept_current_api_fields() -> None:
    payment_intent_init = resources.PaymentIntent.__init__
    setup_intent_init = resources.SetupIntent.__init__

    def payment_intent(
        self: Any,
        description: str | None = None,
        allowed_payment_method_types: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        payment_intent_init(self, payment_method_types=allowed_payment_method_types, **kwargs)
        self.description = description

    def setup_intent(
        self: Any, allowed_payment_method_types: list[str] | None = None, **kwargs: Any
    ) -> None:
        setup_intent_init(self, payment_method_types=allowed_payment_method_types, **kwargs)

    resources.PaymentIntent.__init__ = payment_intent
    resources.SetupIntent.__init__ = setup_intent
    resources.Store.dump_to_disk = lambda self: None


if __name__ == "__main__":
    accept_current_api_fields()
    web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
