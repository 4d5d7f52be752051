"""Names the dead-code check (vulture, run by `./dev test`) must not report, and why.

Everything here is used by a framework (called by name, never by our code) or is a
deliberate part of an interface. Anything else vulture reports is dead: delete it.
aiohttp handlers registered with ``@routes.get(...)`` are not reported
(`--ignore-decorators "@routes.*"`). Excluded as a whole in `./dev test`: store/migrations (Alembic reads revision
variables) and ari/models.py (the event models mirror Asterisk's JSON shapes).
"""

_ = object()

# pydantic and SQLAlchemy call these by name.
_.model_config  # pydantic settings
_._plain_value, _._known_zone, _._name, _._node  # pydantic field validators (config.py)
_._ipv4_and_port, _._host_and_port, _._networks, _._http_url
_._currency, _._max_over_min, _._notify_url, _._delays
_._country, _._main_number, _._publishable_key
_.impl, _.cache_ok, _.process_bind_param, _.process_result_value  # TypeDecorator
_.metadata, _.type_annotation_map  # the declarative base
_.assigned_at  # NumberAssignmentRow: written as a constructor keyword (store/ownership.py)
_.last_used_at  # AdminTokenRow: written by an UPDATE naming it (store/admins.py)
_._on_connect, _._on_begin, _.isolation_level  # engine event hooks (store/db.py)
_.data_received  # asyncio.Protocol callback (ari/http.py)
_.logThreads, _.logProcesses, _.logMultiprocessing, _._srcfile  # logging reads these (logs.py)
_.error_id  # every error class names its stable id (the console's API reports it)

# Interfaces kept on purpose.
_.shortfall  # domain.charging.ChargeStep: what a tick could not charge (tested)
_.open_holds  # Wallet: the live holds, read by the audit tests
_.ari_configured  # Services: whether PBX objects can be built
_.menus, _.time_switches  # Flow: views of a flow's nodes by kind
_.add_listener  # FlowRegistry: more than one observer of flow changes

# Funding.
_.redirect_url  # payments.port: the provider's page for the admin's browser (the console issue)
_.last_error  # notifications: why the last delivery failed, kept on the outbox row for operators

# prometheus_client calls a custom collector's collect() when scraped (metrics.py).
_.collect

# Hooks tests await on instead of sleeping.
_.subscribers  # EventRouter: live subscriptions
_.wait_connected  # AriEventStream: the WebSocket is up

# The sipp tooling in pbx/ serves the PBX tests and `demo` commands alike.
_.dtmf_play_ms, _.carrier_dtmf_scenario, _.HANG_UP_AFTER_UAS, _.CARRIER_REFUSED

# PyYAML reads a node's position from these.
_.end_mark  # set by rates_file.py's alias-aware loader

# AMI: panoramisk's Manager calls its subclass's hooks by name (ami/client.py).
_.connection_lost
# The edges (README "Security").
_._optional_path, _._tls_pairs, _._worker_names  # Settings validators (pydantic calls them)
_.bound  # ConsoleServer, MediaServer: the addresses they listen on (the loopback tests)
# Database: counted and listened to by bench/profile_calls.py and the call-path tests
_.transactions
_.sync_engines
_.route_for  # NumberRepository's, in a session (the call path reads number_route in a unit)
