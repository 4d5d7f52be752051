"""DTMF from sipp: generated RFC 4733 (RFC 2833) captures and carrier scenarios that play them.

sipp sends RFC 2833 digits by replaying a capture (``<exec play_pcap_audio=.../>``, which
needs root for its raw socket). The captures shipped with sipp only work for the digits
1..9, *, # in that order: each replay starts again from the same RTP timestamps, so
Asterisk drops a repeated digit (or "0" out of order) as a duplicate. Here every digit is
its own telephone-event with its own timestamp, and the captures of one call continue
one RTP stream (same SSRC, consecutive sequence numbers, increasing timestamps).

Only the UDP payload, the destination port (relative to the lowest one in the file) and
the packet times matter to sipp: it rewrites addresses and ports to the call's media.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import quoteattr

from callcontrol.pbx.sipp import HANG_UP, render

EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
PACKET_MS = 20  # interval between the packets of one event
SAMPLES_PER_MS = 8  # telephone-event/8000
END_PACKETS = 3  # RFC 4733 2.5.1.4: the final packet is sent three times
VOLUME = 10  # -dBm0, as in sipp's own captures
DEFAULT_SSRC = 0x0CA11C01
# play_pcap_audio runs in the background: the pause after it covers the capture plus this.
PLAY_MARGIN_MS = 100

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET
_ETHERNET = bytes.fromhex("0200000000020200000000010800")
_SRC_IP = bytes((192, 0, 2, 1))  # TEST-NET-1: placeholders, sipp rewrites them
_DST_IP = bytes((192, 0, 2, 2))
_SRC_PORT = 40000
_DST_PORT = 40002


@dataclass(frozen=True)
class RtpEvent:
    """One RTP packet of a capture: when it leaves (ms from the first) and its fields."""

    at_ms: int
    seq: int
    timestamp: int
    marker: bool
    event: int
    end: bool
    duration: int  # in timestamp units (1/8 ms)


@dataclass(frozen=True)
class Pause:
    ms: int


@dataclass(frozen=True)
class Dtmf:
    digits: str
    gap_ms: int = 80
    duration_ms: int = 120


Step = Pause | Dtmf


def _check(digits: str, duration_ms: int, gap_ms: int) -> str:
    digits = digits.upper()
    if not digits:
        raise ValueError("no digits")
    bad = sorted({d for d in digits if d not in EVENTS})
    if bad:
        raise ValueError(f"not DTMF digits: {bad!r} (0-9 * # A-D)")
    if duration_ms <= 0 or gap_ms < 0:
        raise ValueError("duration_ms must be positive and gap_ms not negative")
    return digits


def dtmf_events(
    digits: str,
    *,
    duration_ms: int = 120,
    gap_ms: int = 80,
    first_seq: int = 1,
    first_timestamp: int = 0,
) -> list[RtpEvent]:
    """The packets for ``digits``, in sending order.

    Per digit: updates every 20 ms with growing durations (the first with the marker
    bit), then the end packet three times, 20 ms apart, with the final duration
    (``duration_ms``). The next digit starts ``gap_ms`` after the last end packet. Each
    digit's RTP timestamp is the stream time of its first packet; sequence numbers go up
    by one per packet (both wrap as RTP does).
    """
    digits = _check(digits, duration_ms, gap_ms)
    final = duration_ms * SAMPLES_PER_MS
    updates = math.ceil(duration_ms / PACKET_MS) - 1
    packets: list[RtpEvent] = []
    start = 0
    seq = first_seq
    for digit in digits:
        timestamp = (first_timestamp + start * SAMPLES_PER_MS) & 0xFFFFFFFF
        shapes = [(False, min((i + 1) * PACKET_MS * SAMPLES_PER_MS, final)) for i in range(updates)]
        shapes += [(True, final)] * END_PACKETS
        for i, (end, duration) in enumerate(shapes):
            packets.append(
                RtpEvent(
                    at_ms=start + i * PACKET_MS,
                    seq=seq & 0xFFFF,
                    timestamp=timestamp,
                    marker=i == 0,
                    event=EVENTS[digit],
                    end=end,
                    duration=duration,
                )
            )
            seq += 1
        start = packets[-1].at_ms + gap_ms
    return packets


def dtmf_play_ms(digits: str, *, duration_ms: int = 120, gap_ms: int = 80) -> int:
    """How long sipp takes to play the capture of ``digits`` (first to last packet)."""
    return dtmf_events(digits, duration_ms=duration_ms, gap_ms=gap_ms)[-1].at_ms


def _rtp(packet: RtpEvent, payload_type: int, ssrc: int) -> bytes:
    return struct.pack(
        "!BBHIIBBH",
        0x80,  # version 2, no padding, extension or CSRCs
        (0x80 if packet.marker else 0) | payload_type,
        packet.seq,
        packet.timestamp,
        ssrc,
        packet.event,
        (0x80 if packet.end else 0) | VOLUME,
        packet.duration,
    )


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(payload: bytes, ident: int) -> bytes:
    udp = struct.pack("!HHHH", _SRC_PORT, _DST_PORT, 8 + len(payload), 0) + payload
    fields = [0x45, 0, 20 + len(udp), ident & 0xFFFF, 0x4000, 64, 17]  # DF, TTL 64, UDP
    header = struct.pack("!BBHHHBBH4s4s", *fields, 0, _SRC_IP, _DST_IP)
    header = struct.pack("!BBHHHBBH4s4s", *fields, _ip_checksum(header), _SRC_IP, _DST_IP)
    return _ETHERNET + header + udp


def write_dtmf_pcap(
    digits: str,
    path: Path,
    *,
    duration_ms: int = 120,
    gap_ms: int = 80,
    payload_type: int = 101,
    ssrc: int = DEFAULT_SSRC,
    first_seq: int = 1,
    first_timestamp: int = 0,
) -> Path:
    """Write a libpcap file (Ethernet, IPv4/UDP) of RFC 4733 events for ``digits``.

    See :func:`dtmf_events` for the packets. ``first_seq`` and ``first_timestamp`` let a
    later capture of the same call continue the stream of an earlier one.
    """
    if not 0 <= payload_type <= 127:
        raise ValueError(f"payload type {payload_type} out of range")
    out = bytearray(_PCAP_HEADER)
    for n, packet in enumerate(
        dtmf_events(
            digits,
            duration_ms=duration_ms,
            gap_ms=gap_ms,
            first_seq=first_seq,
            first_timestamp=first_timestamp,
        )
    ):
        frame = _frame(_rtp(packet, payload_type, ssrc & 0xFFFFFFFF), n)
        seconds, ms = divmod(packet.at_ms, 1000)
        out += struct.pack("<IIII", seconds, ms * 1000, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))
    return path


# Endings after the script. A BYE from the PBX at any time is taken by the global recv.
_HANG_UP = HANG_UP.rstrip("\n")
_WAIT_BYE = """  <recv request="BYE" timeout="{ms}" next="got_bye"/>"""


def carrier_dtmf_scenario(
    caller: str,
    steps: Sequence[Step],
    *,
    workdir: Path,
    end: Literal["hangup", "wait_bye"] = "hangup",
    wait_bye_ms: int = 10_000,
    ssrc: int = DEFAULT_SSRC,
) -> str:
    """A carrier call (UAC) that, once answered, runs ``steps``, then hangs up or waits.

    Each :class:`Dtmf` step writes its capture into ``workdir`` (sipp loads them when it
    reads the scenario) and is followed by a pause that covers its playing. With
    ``end="wait_bye"`` the call fails unless the PBX hangs up within ``wait_bye_ms``
    after the script. A BYE from the PBX during the script ends the call successfully.
    The SDP offers telephone-event as payload type 101.
    """
    if end not in ("hangup", "wait_bye"):
        raise ValueError(f"unknown end {end!r}")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    clock_ms = 0  # stream time since the answer, for the RTP timestamps
    seq = 1
    for step in steps:
        if isinstance(step, Pause):
            if step.ms < 0:
                raise ValueError(f"negative pause {step.ms}")
            lines.append(f'  <pause milliseconds="{step.ms}"/>')
            clock_ms += step.ms
            continue
        events = dtmf_events(
            step.digits,
            duration_ms=step.duration_ms,
            gap_ms=step.gap_ms,
            first_seq=seq,
            first_timestamp=clock_ms * SAMPLES_PER_MS,
        )
        key = f"{step!r} {seq} {clock_ms} {ssrc}".encode()
        path = workdir / f"dtmf-{hashlib.sha1(key).hexdigest()[:16]}.pcap"
        write_dtmf_pcap(
            step.digits,
            path,
            duration_ms=step.duration_ms,
            gap_ms=step.gap_ms,
            ssrc=ssrc,
            first_seq=seq,
            first_timestamp=clock_ms * SAMPLES_PER_MS,
        )
        wait = events[-1].at_ms + PLAY_MARGIN_MS
        lines.append(f"  <!-- DTMF {step.digits} -->")
        lines.append(
            f"  <nop><action><exec play_pcap_audio={quoteattr(str(path))}/></action></nop>"
        )
        lines.append(f'  <pause milliseconds="{wait}"/>')
        clock_ms += wait
        seq += len(events)
    ending = _HANG_UP if end == "hangup" else _WAIT_BYE.format(ms=wait_bye_ms)
    return render("carrier_dtmf.xml", caller=caller, script="\n".join(lines), ending=ending)
