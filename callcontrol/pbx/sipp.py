"""sipp as a SIP peer of the PBX: a carrier calling in, users' phones answering.

Used by the PBX tests and by `callcontrol demo phone|call`. Scenario files live in
scenarios/; ``{{name}}`` placeholders are filled in here (sipp's own ``[keywords]``
pass through untouched). Every run keeps its message trace, so a test can assert
on the SIP the peer actually received.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = Path(__file__).with_name("scenarios")
_ports = itertools.count(5100)
_media_ports = itertools.count(30000, 4)

# After the ACK: the caller (UAC) hangs up, at once or after some time, or waits for
# the other side's BYE.
HANG_UP = """  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: 10 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" next="end"/>
"""
HANG_UP_AFTER = '  <pause milliseconds="{ms}"/>\n' + HANG_UP
# The same from the called side (UAS): From/To swapped, the request goes to the Contact.
HANG_UP_AFTER_UAS = """  <pause milliseconds="{ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE [$remote_target] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$local_party];tag=[pid]SIPpTag01[call_number]
      To: [$remote_party]
      [last_Call-ID:]
      CSeq: 10 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" next="end"/>
"""
WAIT_FOR_BYE = """  <recv request="BYE" timeout="{ms}" next="got_bye"/>
"""

CARRIER_ANSWERED = """  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [routes]
      CSeq: [last_cseq_number] ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
{after_ack}
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
"""

# A refused call: whichever final error response comes, acknowledge it.
# The carrier's ACK of a final error response (sipp sends it for the INVITE it answers).
CARRIER_ACK = """  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: [last_cseq_number] ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

CARRIER_REFUSED = (
    "".join(
        f'  <recv response="{code}" optional="true" next="ack"/>\n'
        for code in (403, 404, 480, 486, 503, 603)
    )
    + '  <recv response="500" next="ack"/>\n'
    + '  <label id="ack"/>\n'
    + CARRIER_ACK
    + '  <label id="got_bye"/>\n'
)


@dataclass
class SippResult:
    returncode: int
    messages: str
    errors: str
    screen: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def received(self) -> list[str]:
        """First lines of every SIP message the peer received, in order."""
        return [
            block.splitlines()[0].strip()
            for block in re.split(
                r"-+ [\d\-:. ]+\s*(?:UDP|TCP) message received \[\d+\] bytes :\s*\n",
                self.messages,
            )[1:]
            if block.strip()
        ]

    def explain(self) -> str:
        return f"sipp exit {self.returncode}\n{self.screen[-1500:]}\n{self.errors[-1500:]}"


class SippProcess:
    def __init__(self, proc: asyncio.subprocess.Process, workdir: Path, name: str) -> None:
        self.proc = proc
        self.workdir = workdir
        self.name = name

    async def wait(self, timeout: float = 60.0) -> SippResult:
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        return SippResult(
            self.proc.returncode if self.proc.returncode is not None else -1,
            _read(self.workdir / f"{self.name}.messages.log"),
            _read(self.workdir / f"{self.name}.errors.log"),
            _read(self.workdir / f"{self.name}.screen.log"),
        )

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def render(scenario: str, **values: object) -> str:
    text = (SCENARIOS / scenario).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    missing = re.findall(r"\{\{(\w+)\}\}", text)
    if missing:
        raise ValueError(f"{scenario}: no value for {missing}")
    return text


def free_port() -> int:
    return next(_ports)


async def run_sipp(
    workdir: Path,
    name: str,
    scenario_xml: str,
    *,
    server: bool = False,
    service: str | None = None,
    local_port: int | None = None,
    auth: tuple[str, str] | None = None,
    timeout_s: int = 60,
    pbx: str = "127.0.0.1:5060",
    calls: int = 1,
    rate: int | None = None,
    trace_messages: bool = True,
    extra_args: Sequence[str] = (),
    local_ip: str = "127.0.0.1",
    transport: str = "u1",
) -> SippProcess:
    """Start one sipp (UAC unless server) for ``calls`` calls (0: no limit); returns at once.

    ``rate``: new calls per second (load; at most ``rate`` x 10 at once). Message
    traces are skipped with ``trace_messages=False`` (they slow sipp under load).
    ``extra_args``: more sipp options (e.g. ``-trace_logs`` for a scenario's logs).
    ``local_ip``: the source address (any of 127.0.0.0/8 on loopback: ACL tests);
    ``transport``: sipp's -t (u1 UDP, t1 one TCP connection).
    """
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    xml = workdir / f"{name}.xml"
    xml.write_text(scenario_xml)
    argv = [
        "sipp",
        "-sf",
        str(xml),
        "-i",
        local_ip,
        "-t",
        transport,
        "-p",
        str(local_port or free_port()),
        "-timeout",
        f"{timeout_s}s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(workdir / f"{name}.errors.log"),
        "-trace_screen",
        "-screen_file",
        str(workdir / f"{name}.screen.log"),
        "-mp",
        str(next(_media_ports)),
    ]
    if service:
        argv += ["-s", service]
    if auth:
        argv += ["-au", auth[0], "-ap", auth[1]]
    if trace_messages:
        argv += ["-trace_msg", "-message_file", str(workdir / f"{name}.messages.log")]
    if rate:
        argv += ["-r", str(rate), "-l", str(rate * 10)]
    if calls:
        argv += ["-m", str(calls)]
    argv += extra_args
    if not server:
        argv.append(pbx)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=workdir,
    )
    return SippProcess(proc, workdir, name)
