"""Alembic migrations of the callcontrol schema (run them with ``callcontrol.store.migrate``)."""
