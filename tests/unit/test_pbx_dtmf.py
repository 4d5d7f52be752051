"""Generated RFC 4733 captures (parsed back with struct) and sipp playing them in a call.

The end-to-end tests run two sipps on 127.0.0.1 (ports 6000-6999): the carrier
scenario against a small UAS whose SDP sends the media to a UDP socket of the test,
which checks the telephone-events that arrive. They need sipp and root (raw socket).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import shutil
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcontrol.pbx.dtmf import (
    DEFAULT_SSRC,
    EVENTS,
    Dtmf,
    Pause,
    carrier_dtmf_scenario,
    dtmf_play_ms,
    write_dtmf_pcap,
)

DIGITS = "0123456789*#ABCD"


@dataclass(frozen=True)
class Rtp:
    at_us: int  # pcap time from the first packet
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    event: int
    end: bool
    volume: int
    duration: int


def parse_rtp(data: bytes, at_us: int = 0) -> Rtp:
    b0, b1, seq, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
    assert b0 == 0x80, "RTP version 2, no padding, extension or CSRC"
    assert len(data) == 16, "12 bytes of RTP header, 4 of telephone-event"
    event, flags, duration = struct.unpack("!BBH", data[12:16])
    assert not flags & 0x40, "R bit"
    return Rtp(
        at_us, bool(b1 & 0x80), b1 & 0x7F, seq, timestamp, ssrc, event,
        bool(flags & 0x80), flags & 0x3F, duration,
    )  # fmt: skip


def parse_pcap(data: bytes) -> list[Rtp]:
    magic, major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 1)  # Ethernet
    packets: list[Rtp] = []
    offset = 24
    first_us: int | None = None
    while offset < len(data):
        seconds, micros, included, original = struct.unpack("<IIII", data[offset : offset + 16])
        assert included == original <= snaplen, "no truncated packets (sipp refuses them)"
        frame = data[offset + 16 : offset + 16 + included]
        assert len(frame) == included
        offset += 16 + included
        at_us = seconds * 1_000_000 + micros
        first_us = at_us if first_us is None else first_us

        (ethertype,) = struct.unpack("!H", frame[12:14])
        assert ethertype == 0x0800
        ip = frame[14:]
        version_ihl, _tos, total, _id, _frag, _ttl, proto, _check = struct.unpack(
            "!BBHHHBBH", ip[:12]
        )
        header_len = (version_ihl & 0xF) * 4
        assert version_ihl >> 4 == 4
        assert proto == 17
        assert total == len(ip)
        words = struct.unpack(f"!{header_len // 2}H", ip[:header_len])
        folded = sum(words)
        while folded > 0xFFFF:
            folded = (folded & 0xFFFF) + (folded >> 16)
        assert folded == 0xFFFF, "IPv4 header checksum"
        udp = ip[header_len:]
        _sport, _dport, udp_len, _sum = struct.unpack("!HHHH", udp[:8])
        assert udp_len == len(udp)
        packets.append(parse_rtp(udp[8:], at_us - first_us))
    return packets


def check_stream(packets: list[Rtp], digits: str, duration_ms: int, gap_ms: int) -> None:
    """The RFC 4733 shape of a capture of ``digits``."""
    assert [p.payload_type for p in packets] == [101] * len(packets)
    assert {p.ssrc for p in packets} == {DEFAULT_SSRC}
    seqs = [p.seq for p in packets]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(packets))]
    times = [p.at_us for p in packets]
    assert times == sorted(times)

    events: list[list[Rtp]] = []
    for p in packets:
        if not events or p.timestamp != events[-1][0].timestamp:
            events.append([])
        events[-1].append(p)
    assert [EVENTS[d] for d in digits] == [e[0].event for e in events]
    stamps = [e[0].timestamp for e in events]
    assert len(set(stamps)) == len(stamps), "each digit its own RTP timestamp"
    assert stamps == sorted(stamps)
    final = duration_ms * 8
    for event, next_event in zip(events, [*events[1:], None], strict=True):
        assert {p.event for p in event} == {event[0].event}
        assert [p.marker for p in event] == [True] + [False] * (len(event) - 1)
        updates, ends = event[:-3], event[-3:]
        assert all(p.end for p in ends) and not any(p.end for p in updates)
        assert [p.duration for p in ends] == [final] * 3
        durations = [p.duration for p in updates]
        assert durations == sorted(set(durations)) and all(0 < d < final for d in durations)
        assert len(updates) == -(-duration_ms // 20) - 1
        steps = [b.at_us - a.at_us for a, b in itertools.pairwise(event)]
        assert steps == [20_000] * (len(event) - 1)
        # RTP time runs with the capture's time
        assert (event[0].timestamp - events[0][0].timestamp) * 125 == (
            event[0].at_us - events[0][0].at_us
        )
        if next_event is not None:
            assert next_event[0].at_us - event[-1].at_us == gap_ms * 1000
    assert dtmf_play_ms(digits, duration_ms=duration_ms, gap_ms=gap_ms) * 1000 == times[-1]


def test_one_digit(tmp_path: Path) -> None:
    packets = parse_pcap(write_dtmf_pcap("5", tmp_path / "5.pcap").read_bytes())
    assert [(p.event, p.marker, p.end, p.duration, p.seq) for p in packets] == [
        (5, True, False, 160, 1),
        (5, False, False, 320, 2),
        (5, False, False, 480, 3),
        (5, False, False, 640, 4),
        (5, False, False, 800, 5),
        (5, False, True, 960, 6),
        (5, False, True, 960, 7),
        (5, False, True, 960, 8),
    ]
    assert {p.timestamp for p in packets} == {0}
    assert [p.at_us // 1000 for p in packets] == [0, 20, 40, 60, 80, 100, 120, 140]
    assert {p.volume for p in packets} == {10}


def test_repeated_digits_are_separate_events(tmp_path: Path) -> None:
    packets = parse_pcap(write_dtmf_pcap("11", tmp_path / "11.pcap").read_bytes())
    check_stream(packets, "11", 120, 80)
    assert sorted({p.timestamp for p in packets}) == [0, (140 + 80) * 8]


def test_options(tmp_path: Path) -> None:
    path = write_dtmf_pcap(
        "#a",
        tmp_path / "x.pcap",
        duration_ms=50,
        gap_ms=0,
        payload_type=96,
        ssrc=7,
        first_seq=0xFFFE,
        first_timestamp=0xFFFFFF00,
    )
    packets = parse_pcap(path.read_bytes())
    assert [p.event for p in packets] == [11] * 5 + [12] * 5
    assert {(p.payload_type, p.ssrc) for p in packets} == {(96, 7)}
    assert [p.seq for p in packets[:4]] == [0xFFFE, 0xFFFF, 0, 1]  # wraps
    assert [p.duration for p in packets[:5]] == [160, 320, 400, 400, 400]
    assert packets[0].timestamp == 0xFFFFFF00
    assert packets[5].timestamp == (0xFFFFFF00 + 80 * 8) & 0xFFFFFFFF  # wraps


@pytest.mark.parametrize("digits", ["", "1x2", " "])
def test_rejects_bad_digits(tmp_path: Path, digits: str) -> None:
    with pytest.raises(ValueError):
        write_dtmf_pcap(digits, tmp_path / "x.pcap")


@settings(max_examples=60, deadline=None)
@given(
    digits=st.text(alphabet=DIGITS, min_size=1, max_size=24),
    duration_ms=st.integers(min_value=1, max_value=400),
    gap_ms=st.integers(min_value=0, max_value=300),
)
def test_property_rfc4733_stream(
    tmp_path_factory: pytest.TempPathFactory, digits: str, duration_ms: int, gap_ms: int
) -> None:
    path = tmp_path_factory.mktemp("pcap") / "d.pcap"
    write_dtmf_pcap(digits, path, duration_ms=duration_ms, gap_ms=gap_ms)
    check_stream(parse_pcap(path.read_bytes()), digits, duration_ms, gap_ms)


def test_scenario_continues_the_stream(tmp_path: Path) -> None:
    xml = carrier_dtmf_scenario(
        "+15551234567",
        [Dtmf("12"), Pause(500), Dtmf("22#", gap_ms=100)],
        workdir=tmp_path,
        end="wait_bye",
        wait_bye_ms=4000,
    )
    assert "{{" not in xml
    assert xml.index('<recv request="BYE" optional="global" next="got_bye"/>') < xml.index(
        '<recv response="200" rrs="true"/>'
    )
    assert '<recv request="BYE" timeout="4000" next="got_bye"/>' in xml
    assert 'From: "Carrier" <sip:+15551234567@' in xml
    pcaps = [
        Path(line.split('play_pcap_audio="')[1].split('"')[0])
        for line in xml.splitlines()
        if "play_pcap_audio" in line
    ]
    assert len(pcaps) == 2 and all(p.parent == tmp_path.resolve() for p in pcaps)
    first, second = (parse_pcap(p.read_bytes()) for p in pcaps)
    check_stream(first, "12", 120, 80)
    check_stream(second, "22#", 120, 100)
    assert second[0].seq == first[-1].seq + 1
    # the second capture starts at its time in the call: after the first one's pause
    # (its playing plus a margin) and the 500 ms pause
    pauses = [int(p) for p in _attr_values(xml, "pause milliseconds")]
    assert pauses == [dtmf_play_ms("12") + 100, 500, dtmf_play_ms("22#", gap_ms=100) + 100]
    assert second[0].timestamp == (pauses[0] + pauses[1]) * 8


def _attr_values(xml: str, element_attr: str) -> list[str]:
    return [part.split('"')[0] for part in xml.split(f'<{element_attr}="')[1:]]


def test_scenario_hangs_up(tmp_path: Path) -> None:
    xml = carrier_dtmf_scenario("100", [Pause(10)], workdir=tmp_path, end="hangup")
    assert "BYE [next_url] SIP/2.0" in xml
    assert "play_pcap_audio" not in xml
    with pytest.raises(ValueError):
        carrier_dtmf_scenario("100", [], workdir=tmp_path, end="later")  # type: ignore[arg-type]


# --- sipp end to end ---------------------------------------------------------------------

needs_sipp = pytest.mark.skipif(
    shutil.which("sipp") is None or os.geteuid() != 0,
    reason="needs sipp (Debian sip-tester) and root for play_pcap_audio",
)

_taken: set[int] = set()


def _port_block(size: int = 4) -> int:
    """The first of ``size`` free UDP ports on 127.0.0.1, within 6000-6999."""
    bases = list(range(6000, 7000 - size, size))
    random.shuffle(bases)
    for base in bases:
        block = range(base, base + size)
        if _taken.intersection(block):
            continue
        socks: list[socket.socket] = []
        try:
            for port in block:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        _taken.update(block)
        return base
    raise RuntimeError("no free ports in 6000-6999")


UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="dtmf_uas">
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="remote_party"/>
      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="local_party"/>
      <ereg regexp="sip:[^>;]*" search_in="hdr" header="Contact:" assign_to="remote_target"/>
    </action>
  </recv>
  <Reference variables="remote_party,local_party,remote_target"/>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=uas 1 1 IN IP4 127.0.0.1
      s=-
      c=IN IP4 127.0.0.1
      t=0 0
      m=audio SINK_PORT RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15

    ]]>
  </send>
  <recv request="BYE" optional="global" next="got_bye"/>
  <recv request="ACK" crlf="true"/>
AFTER_ACK
  <label id="got_bye"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
</scenario>
"""
UAS_WAITS = '  <recv request="BYE" timeout="15000" next="got_bye"/>'
UAS_HANGS_UP = """  <pause milliseconds="{ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE [$remote_target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$local_party];tag=[pid]SIPpTag01[call_number]
      To: [$remote_party]
      [last_Call-ID:]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" next="end"/>"""


class Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.packets.append(data)

    def digits(self) -> str:
        """The digits as a receiver takes them: one per end of event (RTP timestamp)."""
        names = {code: digit for digit, code in EVENTS.items()}
        ended: dict[int, int] = {}
        for data in self.packets:
            rtp = parse_rtp(data)
            if rtp.end:
                ended.setdefault(rtp.timestamp, rtp.event)
        return "".join(names[code] for _, code in sorted(ended.items()))


async def _sipp(workdir: Path, name: str, xml: str, *extra: str) -> asyncio.subprocess.Process:
    (workdir / f"{name}.xml").write_text(xml)
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", f"{name}.xml", "-i", "127.0.0.1", "-m", "1", "-nostdin",
        "-timeout", "20s", "-timeout_error",
        "-trace_msg", "-message_file", f"{name}.messages.log",
        "-trace_err", "-error_file", f"{name}.errors.log",
        "-trace_screen", "-screen_file", f"{name}.screen.log",
        *extra,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=workdir,
    )  # fmt: skip


async def _exit_code(proc: asyncio.subprocess.Process, timeout: float = 30) -> int:
    try:
        return await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise


def _explain(workdir: Path) -> str:
    return "\n".join(
        f"== {log.name}\n{log.read_text(errors='replace')[-3000:]}"
        for log in sorted(workdir.glob("*.log"))
    )


async def _call(
    workdir: Path,
    steps: list[Dtmf | Pause],
    *,
    end: Literal["hangup", "wait_bye"],
    uas_after_ack: str,
) -> tuple[int, int, Sink]:
    sink_port, uas_port, uas_media, uac_port, uac_media = (_port_block() for _ in range(5))
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", sink_port))
    try:
        uas = await _sipp(
            workdir,
            "uas",
            UAS.replace("SINK_PORT", str(sink_port)).replace("AFTER_ACK", uas_after_ack),
            "-p", str(uas_port), "-mp", str(uas_media),
        )  # fmt: skip
        xml = carrier_dtmf_scenario(
            "+15551234567", steps, workdir=workdir, end=end, wait_bye_ms=15_000
        )
        uac = await _sipp(
            workdir, "uac", xml,
            "-p", str(uac_port), "-mp", str(uac_media), "-s", "+442079460000",
            f"127.0.0.1:{uas_port}",
        )  # fmt: skip
        try:
            uac_rc = await _exit_code(uac)
            uas_rc = await _exit_code(uas)
        finally:
            for proc in (uac, uas):
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    finally:
        transport.close()
    return uac_rc, uas_rc, sink


@needs_sipp
async def test_sipp_plays_digits_then_hangs_up(tmp_path: Path) -> None:
    uac, uas, sink = await _call(
        tmp_path,
        [Dtmf("12"), Pause(200), Dtmf("11#0")],
        end="hangup",
        uas_after_ack=UAS_WAITS,
    )
    assert (uac, uas) == (0, 0), _explain(tmp_path)
    assert sink.digits() == "1211#0"
    received = [parse_rtp(data) for data in sink.packets]
    assert len(received) == 6 * 8
    assert [p.seq for p in received] == list(range(1, 49))
    assert {p.ssrc for p in received} == {DEFAULT_SSRC}


@needs_sipp
async def test_sipp_accepts_bye_mid_script(tmp_path: Path) -> None:
    # the UAS (the PBX) hangs up while digits are playing, long before the script ends
    loop = asyncio.get_running_loop()
    started = loop.time()
    uac, uas, sink = await _call(
        tmp_path,
        [Dtmf("123456789"), Pause(10_000), Dtmf("0")],
        end="wait_bye",
        uas_after_ack=UAS_HANGS_UP.format(ms=300),
    )
    assert (uac, uas) == (0, 0), _explain(tmp_path)
    assert loop.time() - started < 5, "ended by the BYE, not after the script"
    heard = sink.digits()
    assert heard and "123456789".startswith(heard) and len(heard) < 9
    assert "BYE sip:" in (tmp_path / "uac.messages.log").read_text()


@needs_sipp
async def test_sipp_waits_for_bye_after_script(tmp_path: Path) -> None:
    uac, uas, sink = await _call(
        tmp_path,
        [Pause(100), Dtmf("*")],
        end="wait_bye",
        uas_after_ack=UAS_HANGS_UP.format(ms=1500),
    )
    assert (uac, uas) == (0, 0), _explain(tmp_path)
    assert sink.digits() == "*"
