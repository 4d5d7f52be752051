"""callcontrol: a prepaid business telephone system on Asterisk."""

__version__ = "0.1.0"
