"""Payment providers behind one port (``port``): Stripe (``stripe_provider``) and an
offline provider with test cards for ``./dev run`` and the tests (``offline``)."""
