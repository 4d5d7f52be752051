"""The PBX's own record of when a call ended, for calls that ended while no app saw it.

Two sources, best first:

1. **The CDR file** that ``dialplan/cdr_custom.conf`` makes Asterisk write (one CSV line
   per CDR, microsecond epoch times; the setting ``cdr_file``). Asterisk writes a line
   when the CDR ends (``batch = no``), whether or not any app is connected, so a
   restarted app finds the calls that ended while it was dead.
2. **AMI Hangup events** (``AmiFeed``, ``timestampevents = yes``): the hang-up time of
   each channel while the app's AMI connection was up. That covers an ARI outage the
   app survived, also when the CDR file is not on this host.

Which CDR rows are the call, and when its talk ended. Our record's ``channel_id`` is
the caller's ARI channel id, which is Asterisk's ``uniqueid`` (ARI names channels by
it). Asterisk's CDR engine writes the caller's rows as party A: one row per bridge it
was in with a party B (``dstchannel`` set; the row ends when either party leaves),
and rows without B for its time alone (in an IVR, or after the callee left). So:

* the caller was bridged (rows with a ``dstchannel``): the talk ended at the latest
  end of those rows, the moment the last connected party left (a caller left alone in
  the bridge after the callee hung up, with no app to hang it up, does not pay for the
  silence that follows);
* never bridged (answered into a flow): the end of its last row, its hang-up.

The times are the PBX's clock: keep the PBX's and the app's hosts in NTP sync.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

HANGUPS_KEPT = 20_000  # channels whose AMI hang-up time is remembered (the newest)
SINCE_MARGIN = timedelta(minutes=5)  # CDR rows may be appended a little out of order


@dataclass(frozen=True)
class CdrRow:
    """One line of the CDR file (field order: dialplan/cdr_custom.conf)."""

    uniqueid: str
    linkedid: str
    channel: str
    dstchannel: str
    start: datetime
    answer: datetime | None
    end: datetime
    billsec: int
    disposition: str


def _epoch(text: str) -> datetime | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if value <= 0:
        return None
    return datetime.fromtimestamp(value, UTC)


def parse_cdr_line(line: str) -> CdrRow | None:
    """A CDR line, or None when it is not one (a torn last line, an older format)."""
    try:
        fields = next(csv.reader([line]))
    except (csv.Error, StopIteration):
        return None
    if len(fields) < 10:
        return None
    uniqueid, linkedid, channel, dstchannel, start, answer, end, _, billsec, disposition = fields[
        :10
    ]
    start_at, end_at = _epoch(start), _epoch(end)
    if not uniqueid or start_at is None or end_at is None or not billsec.isdigit():
        return None
    return CdrRow(
        uniqueid,
        linkedid,
        channel,
        dstchannel,
        start_at,
        _epoch(answer),
        end_at,
        int(billsec),
        disposition,
    )


def read_cdr_rows(
    path: Path, channel_ids: Iterable[str], since: datetime | None = None
) -> dict[str, list[CdrRow]]:
    """The rows of each of ``channel_ids`` (as party A) in the file, oldest first.

    With ``since`` (when the oldest of those calls began), the file is read from its
    end back to the first row that ended ``SINCE_MARGIN`` before it: Asterisk appends a
    row when its CDR ends, so nothing of a call that began at ``since`` lies further
    back, and a PBX's long file is not read whole at each restart."""
    wanted = set(channel_ids)
    found: dict[str, list[CdrRow]] = {cid: [] for cid in wanted}
    with path.open("rb") as fh:
        if since is None:
            lines: Iterable[bytes] = fh
        else:
            lines = _lines_backwards(fh)
        stop = since - SINCE_MARGIN if since is not None else None
        for raw in lines:
            line = raw.decode("utf-8", errors="replace")
            head = line[: line.find(",")].strip('"') if "," in line else ""
            if head not in wanted and stop is None:
                continue  # cheap: most lines are other calls
            row = parse_cdr_line(line)
            if row is None:
                continue
            if row.uniqueid in wanted:
                found[row.uniqueid].append(row)
            elif stop is not None and row.end < stop:
                break
    for rows in found.values():
        rows.sort(key=lambda r: r.end)
    return found


def _lines_backwards(fh: BinaryIO, block: int = 1 << 16) -> Iterator[bytes]:
    """The file's lines, last first."""
    pos = fh.seek(0, os.SEEK_END)
    tail = b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        fh.seek(pos)
        lines = (fh.read(step) + tail).split(b"\n")
        tail = lines[0]
        yield from reversed(lines[1:])
    yield tail


def talk_end(rows: list[CdrRow]) -> datetime | None:
    """When the call's connection ended, from the caller's rows (module docstring)."""
    if not rows:
        return None
    bridged = [r for r in rows if r.dstchannel]
    return max(r.end for r in (bridged or rows))


def hangup_time(event: Mapping[str, str]) -> tuple[str, datetime] | None:
    """(uniqueid, time) of an AMI Hangup event that carries a Timestamp, else None."""
    if event.get("Event", "") != "Hangup":
        return None
    uniqueid = event.get("Uniqueid", "")
    when = _epoch(event.get("Timestamp", ""))
    if not uniqueid or when is None:
        return None
    return uniqueid, when


class PbxRecords:
    """Where a restarted or reconnected app asks when a lost call ended."""

    def __init__(self, cdr_file: Path | None) -> None:
        self.cdr_file = cdr_file
        self._hangups: OrderedDict[str, datetime] = OrderedDict()

    def on_event(self, event: Mapping[str, str]) -> None:
        """An AMI event (AmiFeed's callback): remember hang-up times."""
        seen = hangup_time(event)
        if seen is None:
            return
        self._hangups[seen[0]] = seen[1]
        while len(self._hangups) > HANGUPS_KEPT:
            self._hangups.popitem(last=False)

    async def call_end(
        self, channel_id: str, since: datetime | None = None
    ) -> tuple[datetime, str] | None:
        """When the call whose caller's channel is ``channel_id`` (and that began at
        ``since``) ended, and the source ("cdr" or "ami"); None when the PBX has no
        record of it."""
        if self.cdr_file is not None:
            try:
                rows = await asyncio.to_thread(read_cdr_rows, self.cdr_file, [channel_id], since)
            except OSError as exc:
                log.warning("cannot read the PBX's CDR file %s: %s", self.cdr_file, exc.strerror)
            else:
                end = talk_end(rows[channel_id])
                if end is not None:
                    return end, "cdr"
        hung_up = self._hangups.get(channel_id)
        if hung_up is not None:
            return hung_up, "ami"
        return None
