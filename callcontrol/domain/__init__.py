"""Pure logic of callcontrol: no I/O, no SQLAlchemy, no aiohttp.

Modules here are imported by the adapters (``store/``, ``calls/``, ``web/``) and
never import them back.
"""
