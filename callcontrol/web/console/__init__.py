"""The admin console: server-rendered pages (Jinja2 + htmx, live updates over SSE) and
the JSON API under /api/v1, on the same services as the CLI.

    app.py        wiring: console_app(services, live_calls=...), ConsoleServer
    context.py    the Console object handlers reach, the navigation list
    auth.py       sign-in, sessions, bearer tokens, CSRF     throttle.py  login rate limit
    errors.py     the error tree -> HTTP status and body     forms.py     reading input
    ops.py        the admin operations, audited              flowfiles.py flow files
    pages.py      numbers, users    flowpages.py  flows      callpages.py calls, ledger, audit
    api.py        /api/v1           openapi.py    its OpenAPI document
    fundingops.py buying credits, payment methods, auto-recharge, audited (as ops.py)
    fundingpages.py the header's Buy credits / Auto-recharge panels, the Payments page
    fundingapi.py their /api/v1 endpoints       fundingdoc.py their part of the OpenAPI document
    live.py       the live-update hub                        events.py    SSE streams
    render.py     templates and filters; templates/ and static/ (vendored htmx: VENDORED.md)
"""
