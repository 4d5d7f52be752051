"""Rate files: CSV or YAML, validated whole before anything is imported.

CSV, with this header (``description`` and ``connection_fee`` may be left empty;
blank lines and lines starting with ``#`` are skipped)::

    direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
    outbound,,GB,mobile,0.060,0.010,30/6,UK mobiles
    outbound,+4420,,,0.008,0,60/60,London

YAML: a list of mappings with the same keys (values are read as the text written,
so ``country: NO`` is Norway and ``price_per_minute: 0.015`` is never a float)::

    - {direction: outbound, country: GB, number_type: mobile, price_per_minute: 0.060,
       connection_fee: 0.010, increments: 30/6, description: UK mobiles}

Each row names a ``prefix`` (E.164 digits, ``+`` optional, that can start a number:
a country code first, so never ``0``, and not the national trunk prefix right after
the country code, ``+440``) *or* a ``country`` (ISO 3166 alpha-2, as phonenumbers
knows them), not both; ``number_type`` is empty
(any type) or local/national/mobile/toll_free; prices are credits with at most 6
decimals; ``increments`` is ``first/next`` seconds; no value may contain a control
character (NUL, ESC, a newline inside quotes, ...). Every error is reported as
``file:line: field: message`` (``file:line:column:`` for YAML; a row repeated
through an alias at the alias), all at once, in a ``RatesFileError``; a file with
any error imports nothing. YAML nested more than 32 levels deep is refused at its
position (``callcontrol/yamllimits.py``).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
import yaml

from callcontrol.billing.errors import RatesFileError
from callcontrol.domain.money import MICRO, parse_credits
from callcontrol.domain.numbers import NumberType
from callcontrol.domain.rating import Direction, Rate, rate_key
from callcontrol.domain.text import describe_character, shown, unsafe_character
from callcontrol.errors import InvalidInput
from callcontrol.yamllimits import YamlLimitError, compose

__all__ = ["FIELDS", "RatesFile", "load_rates_file", "parse_rates"]

FIELDS = (
    "direction",
    "prefix",
    "country",
    "number_type",
    "price_per_minute",
    "connection_fee",
    "increments",
    "description",
)
_REQUIRED = ("direction", "price_per_minute", "increments")
_DIRECTIONS = {
    "inbound": Direction.INBOUND,
    "in": Direction.INBOUND,
    "outbound": Direction.OUTBOUND,
    "out": Direction.OUTBOUND,
}
_INCREMENTS = re.compile(r"([0-9]{1,4})/([0-9]{1,4})")
_PREFIX = re.compile(r"\+?([0-9]{1,15})")
# A national number pattern (phonenumbers' metadata) with a branch that may start with 0.
_STARTS_WITH_ZERO = re.compile(r"(?:^|\|)(?:\(\?:|\()*(?:0|\\d|\[0)")
MAX_INCREMENT = 3600
MAX_PRICE_MICRO = 1000 * MICRO  # per minute or per connection: a typo, not a price
MAX_DESCRIPTION = 256


@dataclass(frozen=True, slots=True)
class RatesFile:
    """A valid rate file: its rates (``id`` None until imported) and content hash."""

    source: str
    sha256: str
    rates: list[Rate]


@dataclass(frozen=True, slots=True)
class _Cell:
    value: str
    where: str  # "file:line" or "file:line:col"


class _Collector:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")


def load_rates_file(path: str | Path) -> RatesFile:
    """Read and validate ``path`` (.csv, .yaml or .yml); RatesFileError lists every error."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidInput(f"cannot read the rate file {path}: {error.strerror}") from error
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".yaml", ".yml"}:
        raise InvalidInput(f"{path}: a rate file ends in .csv, .yaml or .yml")
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise RatesFileError([f"{path}: not UTF-8 text (byte {error.start})"]) from error
    rates = parse_rates(content, name=str(path), yaml_format=suffix != ".csv")
    return RatesFile(source=str(path), sha256=hashlib.sha256(data).hexdigest(), rates=rates)


def parse_rates(content: str, *, name: str, yaml_format: bool) -> list[Rate]:
    """Validate a rate file's text; RatesFileError with every error if any."""
    errors = _Collector()
    rows = _yaml_rows(content, name, errors) if yaml_format else _csv_rows(content, name, errors)
    rates: list[Rate] = []
    seen: dict[tuple[str, str, str], str] = {}
    for where, cells in rows:
        rate = _rate(where, cells, errors)
        if rate is None:
            continue
        key = rate_key(rate)
        if key in seen:
            errors.add(
                where,
                f"duplicate rate {' '.join(k for k in key if k)} (first at {seen[key]})",
            )
            continue
        seen[key] = where
        rates.append(rate)
    if not rows and not errors.errors:
        errors.add(name, "no rates in the file")
    if errors.errors:
        raise RatesFileError(sorted(errors.errors, key=lambda error: _position(error, name)))
    return rates


def _position(error: str, name: str) -> tuple[int, int]:
    """(line, column) of an error ``name:line[:col]: ...``, for sorting."""
    numbers: list[int] = []
    for part in error[len(name) :].split(":")[1:3]:
        if not part.isdigit():
            break
        numbers.append(int(part))
    line, column, *_ = [*numbers, 0, 0]
    return line, column


# ---- reading rows ------------------------------------------------------------------------


def _csv_rows(content: str, name: str, errors: _Collector) -> list[tuple[str, dict[str, _Cell]]]:
    reader = csv.reader(io.StringIO(content, newline=""))
    header: list[str] | None = None
    rows: list[tuple[str, dict[str, _Cell]]] = []
    try:
        for record in reader:
            where = f"{name}:{reader.line_num}"
            if not any(cell.strip() for cell in record) or record[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in record]
                if not _check_header(header, where, errors):
                    return []
                continue
            if len(record) != len(header):
                errors.add(where, f"{len(record)} fields, the header has {len(header)}")
                continue
            rows.append(
                (where, {key: _Cell(cell, where) for key, cell in zip(header, record, strict=True)})
            )
    except csv.Error as error:
        errors.add(f"{name}:{reader.line_num}", f"not valid CSV: {error}")
    if header is None and not errors.errors:
        errors.add(f"{name}:1", f"no header: expected {','.join(FIELDS)}")
    return rows


def _check_header(header: list[str], where: str, errors: _Collector) -> bool:
    unknown = [column for column in header if column not in FIELDS]
    missing = [column for column in _REQUIRED if column not in header]
    duplicated = sorted({column for column in header if header.count(column) > 1})
    for what, columns in (("unknown", unknown), ("missing", missing), ("repeated", duplicated)):
        if columns:
            errors.add(where, f"{what} column(s) {', '.join(columns)}; expected {','.join(FIELDS)}")
    return not (unknown or missing or duplicated)


def _mark(name: str, mark: yaml.Mark | None) -> str:
    if mark is None:
        return name
    return f"{name}:{mark.line + 1}:{mark.column + 1}"


class _AliasAwareLoader(yaml.SafeLoader):
    """SafeLoader whose aliases carry their own position (not their anchor's), so that
    a row repeated through ``*alias`` is reported where it is repeated."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if not self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        mark = event.start_mark
        node = super().compose_node(parent, index)
        if node is None:  # pragma: no cover - an alias always names a node
            return None
        here = copy.copy(node)
        here.start_mark = here.end_mark = mark
        return here


def _yaml_rows(content: str, name: str, errors: _Collector) -> list[tuple[str, dict[str, _Cell]]]:
    try:
        root = compose(content, loader=_AliasAwareLoader)
    except YamlLimitError as error:
        errors.add(_mark(name, error.problem_mark), f"{error.problem} (the limit of a rate file)")
        return []
    except yaml.MarkedYAMLError as error:
        errors.add(_mark(name, error.problem_mark), f"not valid YAML: {error.problem}")
        return []
    except yaml.YAMLError as error:
        errors.add(name, f"not valid YAML: {error}")
        return []
    if root is None:
        return []
    if not isinstance(root, yaml.SequenceNode):
        errors.add(_mark(name, root.start_mark), "expected a list of rates (- direction: ...)")
        return []
    rows: list[tuple[str, dict[str, _Cell]]] = []
    for item in root.value:
        where = _mark(name, item.start_mark)
        if not isinstance(item, yaml.MappingNode):
            errors.add(where, "expected a rate (a mapping of direction, prefix, ...)")
            continue
        cells: dict[str, _Cell] = {}
        for key_node, value_node in item.value:
            key_where = _mark(name, key_node.start_mark)
            key = (
                str(key_node.value).strip().lower() if isinstance(key_node, yaml.ScalarNode) else ""
            )
            if key not in FIELDS:
                errors.add(
                    key_where,
                    f"unknown field {shown(key_node.value)}; expected {', '.join(FIELDS)}",
                )
            elif key in cells:
                errors.add(key_where, f"{key}: given twice")
            elif not isinstance(value_node, yaml.ScalarNode):
                errors.add(_mark(name, value_node.start_mark), f"{key}: expected a single value")
            else:
                raw = str(value_node.value)
                if value_node.tag == "tag:yaml.org,2002:null" or (
                    value_node.style is None and raw in {"~", "null", "Null", "NULL"}
                ):
                    raw = ""
                cells[key] = _Cell(raw, _mark(name, value_node.start_mark))
        rows.append((where, cells))  # a row with an unknown field is still checked
    return rows


# ---- one row -----------------------------------------------------------------------------


def _prefix_problem(digits: str) -> str | None:
    """Why no E.164 number can start with ``digits``, or None."""
    if digits.startswith("0"):
        return "a prefix starts with the country code, whose first digit is 1 to 9"
    for length in range(1, min(3, len(digits) - 1) + 1):  # country codes are prefix-free
        code = int(digits[:length])
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
        if regions is None:
            continue
        metadata = [
            phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
            for region in regions
        ]
        trunk_zero = any(m is not None and m.national_prefix == "0" for m in metadata)
        zero_starts = any(
            m is not None
            and m.general_desc is not None
            and _STARTS_WITH_ZERO.search(m.general_desc.national_number_pattern or "")
            for m in metadata
        )
        if digits[length] == "0" and trunk_zero and not zero_starts:
            return (
                f"numbers of +{code} never have 0 after the country code (0 is the "
                f"national trunk prefix): write +{code}{digits[length + 1 :]}"
            )
        return None
    return None


def _rate(where: str, cells: dict[str, _Cell], errors: _Collector) -> Rate | None:
    before = len(errors.errors)
    for key, cell in cells.items():
        found = unsafe_character(cell.value)
        if found is not None:
            errors.add(
                cell.where,
                f"{key}: contains the control character {describe_character(found[1])}",
            )

    def text(key: str) -> tuple[str, str]:
        cell = cells.get(key)
        return ("", where) if cell is None else (cell.value.strip(), cell.where)

    value, at = text("direction")
    direction = _DIRECTIONS.get(value.lower())
    if not value:
        errors.add(at, "direction: missing (inbound or outbound)")
    elif direction is None:
        errors.add(at, f"direction: {shown(value)} is not inbound or outbound")

    value, at = text("prefix")
    prefix: str | None = None
    if value:
        match = _PREFIX.fullmatch(value)
        problem = None if match is None else _prefix_problem(match.group(1))
        if match is None:
            errors.add(at, f"prefix: {shown(value)} is not digits (E.164, + optional, 1-15 digits)")
        elif problem is not None:
            errors.add(at, f"prefix: {shown(value)} can never match: {problem}")
        else:
            prefix = match.group(1)

    value, at = text("country")
    country: str | None = None
    if value:
        country = value.upper()
        if country not in phonenumbers.SUPPORTED_REGIONS:
            errors.add(
                at, f"country: unknown country code {shown(value)} (ISO 3166 alpha-2, e.g. GB)"
            )
    if prefix is None and country is None and not text("prefix")[0]:
        errors.add(where, "a rate needs a prefix or a country")
    if text("prefix")[0] and country is not None:
        errors.add(where, "a rate names a prefix or a country, not both")

    value, at = text("number_type")
    number_type: NumberType | None = None
    if value:
        try:
            number_type = NumberType(value.lower())
        except ValueError:
            choices = ", ".join(t.value for t in NumberType)
            errors.add(at, f"number_type: unknown number type {shown(value)} (empty, or {choices})")

    price = _price(text("price_per_minute"), "price_per_minute", errors, required=True)
    fee = _price(text("connection_fee"), "connection_fee", errors, required=False)

    value, at = text("increments")
    first = next_ = 0
    match = _INCREMENTS.fullmatch(value.replace(" ", ""))
    if not value:
        errors.add(at, "increments: missing (first/next seconds, e.g. 60/60)")
    elif match is None:
        errors.add(
            at, f"increments: {shown(value)} is not first/next seconds (e.g. 60/60, 30/6, 1/1)"
        )
    else:
        first, next_ = int(match.group(1)), int(match.group(2))
        if not (1 <= first <= MAX_INCREMENT and 1 <= next_ <= MAX_INCREMENT):
            errors.add(at, f"increments: each is 1 to {MAX_INCREMENT} seconds, not {shown(value)}")

    description, at = text("description")
    if len(description) > MAX_DESCRIPTION:
        errors.add(at, f"description: longer than {MAX_DESCRIPTION} characters")

    if len(errors.errors) > before or direction is None or price is None or fee is None:
        return None
    return Rate(
        id=None,
        direction=direction,
        prefix=prefix,
        country=None if prefix is not None else country,
        number_type=number_type,
        price_per_minute=price,
        connection_fee=fee,
        first_increment=first,
        next_increment=next_,
        description=description,
    )


def _price(cell: tuple[str, str], field: str, errors: _Collector, *, required: bool) -> int | None:
    value, at = cell
    if not value:
        if required:
            errors.add(at, f"{field}: missing")
            return None
        return 0
    try:
        return parse_credits(value, maximum=MAX_PRICE_MICRO)
    except InvalidInput as error:
        errors.add(at, f"{field}: {error}")
        return None
