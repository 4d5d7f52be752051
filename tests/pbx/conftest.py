"""Registers the PBX tests' fixtures; they and everything else live in pbx_harness.py."""

from pbx_harness import app, carrier, org, pbx, phones

__all__ = ["app", "carrier", "org", "pbx", "phones"]
