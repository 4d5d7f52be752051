"""Free text: control and format characters refused on input, escaped on output."""

from __future__ import annotations

import re

import pytest

from callcontrol.domain.text import check_text, printable
from callcontrol.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, café ✓", "plain text, café ✓"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("a\nb\r\tc", "a\\nb\\r\\tc"),
        ("abc\u202edef", "abc\\u202edef"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("line\u2028sep", "line\\u2028sep"),
        ("nul\x00", "nul\\x00"),
        ("private\U000f0000", "private\\U000f0000"),
        ("non-breaking\u00a0space", "non-breaking\u00a0space"),
    ],
)
def test_printable_escapes_only_control_and_format_characters(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_check_text_returns_the_text_stripped() -> None:
    assert check_text("  a reason  ", "the reason", max_length=10) == "a reason"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("x\x1by", "the reason contains the control character U+001B at position 2"),
        ("a\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE at position 2"),
        ("x" * 11, "the reason has 11 characters: at most 10"),
        ("   ", "the reason is empty"),
    ],
)
def test_check_text_refuses(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(reason)):
        check_text(text, "the reason", max_length=10, required=True)
