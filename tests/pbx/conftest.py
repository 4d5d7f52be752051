"""Registers the PBX tests' fixtures; they and everything else live in pbx_harness.py."""

from pbx_harness import app, carrier, org, pbx, phones
from second_pbx import second_pbx

__all__ = ["app", "carrier", "org", "pbx", "phones", "second_pbx"]
