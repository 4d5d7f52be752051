"""Rate files: every error with file:line (and column for YAML); nothing partial."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcontrol.billing.errors import RatesFileError
from callcontrol.billing.rates_file import load_rates_file
from callcontrol.domain.money import parse_credits
from callcontrol.domain.numbers import NumberType
from callcontrol.domain.rating import Direction
from callcontrol.errors import InvalidInput

REPO = Path(__file__).resolve().parents[3]
HEADER = (
    "direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(RatesFileError) as caught:
        load_rates_file(path)
    assert "nothing was imported" in str(caught.value)
    return caught.value.errors


def test_the_example_rate_file_is_valid() -> None:
    rates_file = load_rates_file(REPO / "rates" / "example_rates.csv")
    by_location = {(r.direction, r.location, r.number_type): r for r in rates_file.rates}
    toll_free_in = by_location[(Direction.INBOUND, "GB", NumberType.TOLL_FREE)]
    local_in = by_location[(Direction.INBOUND, "GB", NumberType.LOCAL)]
    assert toll_free_in.price_per_minute > local_in.price_per_minute
    assert (Direction.OUTBOUND, "+49151", None) in by_location
    assert len(rates_file.sha256) == 64


def test_a_csv_file_is_read_exactly(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.csv",
        "# a comment\n\n" + HEADER + "outbound,,gb,mobile,0.060,0.010,30/6,UK mobiles\n"
        "out,+4420,,,0.008,,60/60,\n",
    )
    mobile, london = load_rates_file(path).rates
    assert (mobile.direction, mobile.country, mobile.number_type) == (
        Direction.OUTBOUND,
        "GB",
        NumberType.MOBILE,
    )
    assert (mobile.price_per_minute, mobile.connection_fee) == (60_000, 10_000)
    assert (mobile.first_increment, mobile.next_increment) == (30, 6)
    assert (london.prefix, london.country, london.connection_fee) == ("4420", None, 0)


def test_every_csv_error_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.csv",
        HEADER
        + "outbound,,GB,,0.0100001,0,60/60,too many decimals\n"  # line 2
        + "outbound,,GB,mobile,1e3,0,60/60,exponent\n"  # 3
        + "outbound,,GB,landline,0.01,0,60/60,unknown type\n"  # 4
        + "outbound,,UK,,0.01,0,60/60,UK is not ISO\n"  # 5
        + "outbound,44a,,,0.01,0,60/60,prefix not digits\n"  # 6
        + "outbound,,,,0.01,0,60/60,neither\n"  # 7
        + "sideways,,FR,,0.01,0,60/60,direction\n"  # 8
        + "outbound,,FR,,0.01,0,60,increments\n"  # 9
        + "outbound,,DE,,-0.01,0,60/60,negative\n"  # 10
        + "outbound,+33,FR,,0.01,0,60/60,both\n"  # 11
        + "outbound,,GB,,0.02,0,1/1,duplicate of line 2? no: line 2 failed\n"  # 12
        + "outbound,,GB,,0.03,0,1/1,duplicate of line 12\n"  # 13
        + "outbound,,GB\n",  # 14
    )
    errors = errors_of(path)
    expected = [
        (2, "price_per_minute", "too many decimal places"),
        (3, "price_per_minute", "not an amount"),
        (4, "number_type", "unknown number type 'landline'"),
        (5, "country", "unknown country code 'UK'"),
        (6, "prefix", "is not digits"),
        (7, "", "a prefix or a country"),
        (8, "direction", "not inbound or outbound"),
        (9, "increments", "not first/next"),
        (10, "price_per_minute", "negative"),
        (11, "", "not both"),
        (13, "", "duplicate rate outbound GB (first at"),
        (14, "", "3 fields, the header has 8"),
    ]
    assert len(errors) == len(expected), errors
    for error, (line, field, text) in zip(errors, expected, strict=True):
        assert error.startswith(f"{path}:{line}: {field}"), error
        assert text in error, error


def test_a_bad_header_is_reported_at_line_1(tmp_path: Path) -> None:
    path = write(tmp_path, "h.csv", "direction,country,price,increments\noutbound,GB,1,60/60\n")
    unknown, missing = errors_of(path)
    assert unknown.startswith(f"{path}:1: unknown column(s) price;")
    assert missing.startswith(f"{path}:1: missing column(s) price_per_minute;")


def test_an_empty_file_has_no_rates(tmp_path: Path) -> None:
    assert "no header" in errors_of(write(tmp_path, "e.csv", ""))[0]
    assert "no rates" in errors_of(write(tmp_path, "e.yaml", ""))[0]


def test_a_yaml_file_reads_values_as_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "r.yaml",
        "- direction: outbound\n"
        "  country: NO\n"  # Norway, not False
        "  price_per_minute: 0.015\n"  # exact, not a float
        "  increments: 60/60\n"
        "- {direction: inbound, prefix: +4420, number_type: ~, price_per_minute: 1,"
        " connection_fee: 0.5, increments: 1/1, description: London in}\n",
    )
    norway, london = load_rates_file(path).rates
    assert (norway.country, norway.price_per_minute) == ("NO", 15_000)
    assert (london.prefix, london.number_type, london.connection_fee) == ("4420", None, 500_000)


def test_yaml_errors_have_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        "- direction: outbound\n"  # 1
        "  country: GB\n"
        "  price_per_minute: 0.0000001\n"  # 3, column 21
        "  increments: 60/60\n"
        "- direction: outbound\n"  # 5
        "  country: ZZ\n"  # 6, column 12
        "  price_per_minute: 1\n"
        "  increments: 60/60\n"
        "  colour: blue\n"  # 9, column 3
        "- direction: outbound\n"  # 10
        "  country: FR\n"
        "  increments: 60/60\n",
    )
    assert errors_of(path) == [
        f"{path}:3:21: price_per_minute: '0.0000001' has too many decimal places: "
        "at most 6 (one micro-credit)",
        f"{path}:6:12: country: unknown country code 'ZZ' (ISO 3166 alpha-2, e.g. GB)",
        f"{path}:9:3: unknown field 'colour'; expected direction, prefix, country, "
        "number_type, price_per_minute, connection_fee, increments, description",
        f"{path}:10:3: price_per_minute: missing",
    ]


def test_yaml_syntax_errors_point_at_the_problem(tmp_path: Path) -> None:
    (error,) = errors_of(write(tmp_path, "s.yaml", "- direction: outbound\n  country: [GB\n"))
    assert error.startswith(f"{tmp_path / 's.yaml'}:3:")
    assert "not valid YAML" in error


def test_a_yaml_mapping_is_not_a_list(tmp_path: Path) -> None:
    (error,) = errors_of(write(tmp_path, "m.yaml", "direction: outbound\n"))
    assert "expected a list of rates" in error


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"\.csv, \.yaml or \.yml"):
        load_rates_file(write(tmp_path, "r.txt", HEADER))
    with pytest.raises(InvalidInput, match="cannot read"):
        load_rates_file(tmp_path / "missing.csv")


def test_many_errors_are_all_kept_but_the_message_stays_short(tmp_path: Path) -> None:
    rows = "".join(f"outbound,,GB,,0.1234567,0,60/60,{i}\n" for i in range(30))
    path = write(tmp_path, "many.csv", HEADER + rows)
    with pytest.raises(RatesFileError) as caught:
        load_rates_file(path)
    assert len(caught.value.errors) == 30
    assert "... and 10 more" in str(caught.value)
    assert parse_credits("0.123456") == 123_456


def test_yaml_nested_too_deeply_is_refused_at_its_position(tmp_path: Path) -> None:
    # 500 levels overflowed the YAML composer's recursion: RecursionError, a traceback
    deep = "- direction: outbound\n  country: " + "[" * 500 + "]" * 500 + "\n"
    (error,) = errors_of(write(tmp_path, "deep.yaml", deep))
    # the 33rd level: the list, the rate's mapping and the 31st "["
    assert error == (
        f"{tmp_path / 'deep.yaml'}:2:42: nested too deeply: more than 32 levels of mappings "
        "and lists (the limit of a rate file)"
    )
