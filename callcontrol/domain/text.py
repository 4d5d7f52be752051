"""Free text: refused on input when it could fake output, escaped whenever it is printed.

An admin's free text (an adjustment's reason, a rate's description) is stored and
later printed on terminals, in logs and in ledgers. A control or format character
in it could recolour a terminal (``ESC [31m``), print a fake ledger line (a newline)
or reverse what follows (U+202E RIGHT-TO-LEFT OVERRIDE). So:

- on input, ``check_text`` refuses such characters (and text over its length limit)
  with an ``InvalidInput`` naming the character and where it is;
- on output, ``printable`` shows every such character as a Python-style escape
  (``\\x1b``, ``\\n``, ``\\u202e``), so text that reached the database another way
  (a caller id from a SIP header, an older version's data) cannot do it either.

The characters concerned are those of the Unicode categories Cc (control), Cf
(format: bidi overrides, zero-width characters), Cs, Co (surrogates, private use),
Zl and Zp (line and paragraph separators).
"""

from __future__ import annotations

import unicodedata

from callcontrol.errors import InvalidInput

__all__ = [
    "MAX_SHOWN",
    "UNSAFE_CATEGORIES",
    "check_text",
    "cut",
    "describe_character",
    "printable",
    "shown",
    "unsafe_character",
]

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def unsafe_character(text: str) -> tuple[int, str] | None:
    """The first control or format character of ``text`` and its 1-based position."""
    for position, char in enumerate(text, 1):
        if _unsafe(char):
            return position, char
    return None


def describe_character(char: str) -> str:
    """``U+001B``, with the character's Unicode name when it has one."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def check_text(text: str, what: str, *, max_length: int, required: bool = False) -> str:
    """``text`` without surrounding white space; InvalidInput when it is longer than
    ``max_length`` characters, contains a control or format character, or (if
    ``required``) is empty. ``what`` names the text in the message (``--reason``)."""
    stripped = text.strip()
    if required and not stripped:
        raise InvalidInput(f"{what} is empty: write some text")
    if len(stripped) > max_length:
        raise InvalidInput(
            f"{what} has {len(stripped)} characters: at most {max_length} are kept, "
            "so write a shorter one"
        )
    found = unsafe_character(stripped)
    if found is not None:
        position, char = found
        raise InvalidInput(
            f"{what} contains the control character {describe_character(char)} at "
            f"position {position}: write plain text on one line"
        )
    return stripped


def printable(text: str) -> str:
    """``text`` with every control or format character escaped (``\\x1b``, ``\\n``,
    ``\\u202e``): safe to print on a terminal, one line for one line."""
    if text.isprintable():
        return text
    return "".join(_escape(char) if _unsafe(char) else char for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if char in "\n\r\t":
        return repr(char)[1:-1]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


MAX_SHOWN = 80  # characters of an admin's value an error message repeats


def shown(value: object) -> str:
    """An admin's value for an error message: quoted, escaped, cut when long."""
    if isinstance(value, bool):
        return str(value).lower()  # as TOML writes it
    if not isinstance(value, str):
        return cut(repr(value))
    if len(value) <= MAX_SHOWN:
        return repr(value)
    return f"{value[:MAX_SHOWN]!r}... ({len(value)} characters)"


def cut(text: str, limit: int = MAX_SHOWN) -> str:
    """A name for an error message: on one line, cut when long."""
    if not text.isprintable():
        text = repr(text)[1:-1]
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"
