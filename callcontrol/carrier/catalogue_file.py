"""The catalogue file: the numbers an inventory offers, with their prices.

CSV with this header; blank lines and lines starting with ``#`` are skipped::

    number,type,setup_price,monthly_price
    +442079460100,local,1.00,2.50
    +448081570100,toll_free,5,10

``number`` is E.164 (``+`` and the country code; separators allowed); ``type`` is
local, national, mobile or toll_free; prices are credits with at most 6 decimals.
The country is the number's, and the type must be one ``phonenumbers`` gives its
range (a North American number may be local or mobile): a London number sold as
toll-free is an error. Every error is reported as ``file:line: field: message``,
all at once, in a ``CatalogueFileError``; a file with any error imports nothing.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from callcontrol.carrier.port import Offer
from callcontrol.domain.money import MICRO, format_credits, parse_credits
from callcontrol.domain.numbers import NumberType, number_country, parse_e164, possible_types
from callcontrol.domain.text import shown, unsafe_character
from callcontrol.errors import InvalidInput

__all__ = ["FIELDS", "CatalogueFileError", "load_catalogue_file", "parse_catalogue"]

FIELDS = ("number", "type", "setup_price", "monthly_price")
MAX_PRICE_MICRO = 10_000 * MICRO  # a setup fee or a month's rent: beyond is a typo
MAX_FILE_BYTES = 20 * 1024 * 1024
_SHOWN = 20


class CatalogueFileError(InvalidInput):
    """Every problem found in a catalogue file; nothing was imported."""

    error_id = "catalogue_file_error"

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        lines = [f"the catalogue file has {len(errors)} error(s); nothing was imported"]
        lines += errors[:_SHOWN]
        if len(errors) > _SHOWN:
            lines.append(f"... and {len(errors) - _SHOWN} more")
        super().__init__("\n  ".join(lines))


def load_catalogue_file(path: str | Path) -> list[Offer]:
    """The offers of the file at ``path``; CatalogueFileError lists every problem."""
    file = Path(path)
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInput(f"{file} is larger than {MAX_FILE_BYTES // 1024 // 1024} MiB")
        content = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"catalogue file {file} does not exist") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{file} is not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror or exc}") from None
    return parse_catalogue(content, name=str(file))


def parse_catalogue(content: str, *, name: str) -> list[Offer]:
    """The offers of a catalogue file's text (``name`` for the messages)."""
    errors: list[str] = []
    lines = [
        (number, line)
        for number, line in enumerate(content.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise CatalogueFileError([f"{name}: empty: the header is {','.join(FIELDS)}"])
    header_line, header = lines[0]
    fields = [f.strip().lower() for f in next(csv.reader([header]))]
    if fields != list(FIELDS):
        raise CatalogueFileError(
            [f"{name}:{header_line}: the header must be {','.join(FIELDS)}, got {shown(header)}"]
        )
    offers: list[Offer] = []
    seen: dict[str, int] = {}
    for line_number, line in lines[1:]:
        where = f"{name}:{line_number}"
        offer = _offer(where, line, errors)
        if offer is None:
            continue
        if offer.e164 in seen:
            errors.append(f"{where}: number: {offer.e164} is already on line {seen[offer.e164]}")
            continue
        seen[offer.e164] = line_number
        offers.append(offer)
    if errors:
        raise CatalogueFileError(errors)
    return offers


def _offer(where: str, line: str, errors: list[str]) -> Offer | None:
    bad = unsafe_character(line)
    if bad is not None:
        errors.append(f"{where}: contains a control or format character")
        return None
    cells = [cell.strip() for cell in next(csv.reader(io.StringIO(line)), [])]
    if len(cells) != len(FIELDS):
        errors.append(
            f"{where}: expected {len(FIELDS)} fields ({','.join(FIELDS)}), got {len(cells)}"
        )
        return None
    text, kind_text, setup_text, monthly_text = cells
    before = len(errors)
    e164 = country = ""
    try:
        e164 = parse_e164(text)
        country = number_country(e164)
    except InvalidInput as exc:
        errors.append(f"{where}: number: {exc}")
    kind: NumberType | None = None
    try:
        kind = NumberType(kind_text.lower())
    except ValueError:
        choices = ", ".join(t.value for t in NumberType)
        errors.append(f"{where}: type: {shown(kind_text)} is not a number type ({choices})")
    if e164 and kind is not None:
        allowed = possible_types(e164)
        if kind not in allowed:
            errors.append(
                f"{where}: type: {e164} is a {'/'.join(sorted(allowed))} number "
                f"in {country}, not {kind}"
            )
    setup = _price(where, "setup_price", setup_text, errors)
    monthly = _price(where, "monthly_price", monthly_text, errors)
    if len(errors) > before or kind is None or setup is None or monthly is None:
        return None
    return Offer(e164, country, kind, setup, monthly)


def _price(where: str, field: str, text: str, errors: list[str]) -> int | None:
    try:
        value = parse_credits(text, maximum=MAX_PRICE_MICRO)
    except InvalidInput as exc:
        limit = format_credits(MAX_PRICE_MICRO)
        errors.append(f"{where}: {field}: {exc} (0 to {limit} credits)")
        return None
    return value
