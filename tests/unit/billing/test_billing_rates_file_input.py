"""Rate files with hostile or impossible values: refused with their line, never stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcontrol.billing.errors import RatesFileError
from callcontrol.billing.rates_file import load_rates_file

HEADER = (
    "direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description\n"
)


def errors_of(tmp_path: Path, name: str, text: str) -> list[str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RatesFileError) as caught:
        load_rates_file(path)
    return [error.removeprefix(f"{path}:") for error in caught.value.errors]


@pytest.mark.parametrize(
    ("row", "where"),
    [
        ("outbound,,GB,,0.01,0,60/60,nul\x00here\n", "2: description"),
        ("outbound,,GB,,0.01,0,60/60,\x1b[31mred\n", "2: description"),
        ('outbound,,GB,,0.01,0,60/60,"two\nlines"\n', "3: description"),  # where the row ends
        ("outbound,+44\x00,,,0.01,0,60/60,x\n", "2: prefix"),
    ],
)
def test_control_characters_are_refused_with_their_line(
    tmp_path: Path, row: str, where: str
) -> None:
    errors = errors_of(tmp_path, "r.csv", HEADER + row)
    assert errors[0].startswith(f"{where}: contains the control character U+00"), errors


def test_a_huge_price_is_refused_with_its_line(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "r.csv", HEADER + f"outbound,,GB,,{'9' * 5000},0,60/60,x\n")
    assert len(errors) == 1
    assert errors[0].startswith("2: price_per_minute: ")
    assert "at most 40 characters" in errors[0]
    assert len(errors[0]) < 300


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ("+0", "first digit is 1 to 9"),
        ("+044", "first digit is 1 to 9"),
        ("+4402079", "numbers of +44 never have 0 after the country code"),
        ("+4901", "numbers of +49 never have 0 after the country code"),
    ],
)
def test_prefixes_that_can_never_match_are_refused(
    tmp_path: Path, prefix: str, reason: str
) -> None:
    errors = errors_of(tmp_path, "r.csv", HEADER + f"outbound,{prefix},,,0.01,0,60/60,x\n")
    assert errors == [f"2: prefix: {prefix!r} can never match: " + errors[0].split(": ", 3)[3]]
    assert reason in errors[0]


@pytest.mark.parametrize("prefix", ["+3906", "+39", "+4420", "+1", "+81", "+4"])
def test_prefixes_that_can_start_a_number_are_accepted(tmp_path: Path, prefix: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(HEADER + f"outbound,{prefix},,,0.01,0,60/60,x\n", encoding="utf-8")
    assert load_rates_file(path).rates[0].prefix == prefix.lstrip("+")


def test_a_row_repeated_through_an_alias_is_reported_at_the_alias(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        "r.yaml",
        "- &uk {direction: outbound, country: GB, price_per_minute: 0.01, increments: 60/60}\n"
        "- {direction: outbound, country: FR, price_per_minute: 0.01, increments: 60/60}\n"
        "- *uk\n",
    )
    assert len(errors) == 1
    assert errors[0].startswith("3:3: duplicate rate outbound GB (first at "), errors
    assert errors[0].endswith("r.yaml:1:3)")
