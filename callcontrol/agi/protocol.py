"""FastAGI framing: the request's environment, one command, its one answer.

Asterisk's ``AGI(agi://host:port/script,arg1,...)`` opens a TCP connection and sends
the request as ``agi_<name>: <value>`` lines ended by an empty line::

    agi_network: yes
    agi_network_script: authorize
    agi_channel: PJSIP/carrier-00000001
    agi_extension: *88+442079460000
    agi_arg_1: inbound
    <empty line>

then waits for commands, one line each, and answers each with one line (a usage
error, 520, spans several):

    200 result=<int>[ (<data>)][ endpos=<int>]   done (GET VARIABLE's value in the brackets)
    510 Invalid or unknown command
    511 Command Not Permitted on a dead channel or intercept routine
    520-Invalid command syntax.  Proper usage follows: ... 520 End of proper usage.

When the channel hangs up while the script runs, Asterisk writes one ``HANGUP`` line
(at any moment, also before an answer) and answers later commands on the dead
channel, or closes the socket once the script ends.

This module only parses; ``channel.py`` runs the conversation over a socket. Every
read is bounded (line length, number of environment lines), so a peer that sends
garbage or too much gets a clear ``AgiProtocolError``, never unbounded memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from callcontrol.errors import CallControlError

__all__ = [
    "HANGUP_LINE",
    "MAX_ENV_LINES",
    "MAX_LINE",
    "MAX_USAGE_LINES",
    "AgiCommandError",
    "AgiError",
    "AgiHangup",
    "AgiProtocolError",
    "AgiRequest",
    "AgiResult",
    "AgiTimeout",
    "parse_env_line",
    "parse_result",
    "quote_arg",
]

MAX_LINE = 4096  # bytes in one line of the request or of an answer
MAX_ENV_LINES = 128  # agi_* lines of one request (Asterisk sends ~25 plus the arguments)
MAX_USAGE_LINES = 64  # lines of one 520 usage answer
HANGUP_LINE = "HANGUP"

_ENV_LINE = re.compile(r"(agi_[a-z0-9_]{1,64}): ?(.*)")
_RESULT = re.compile(r"200 result=(-?\d{1,18})(?: \((.*)\))?(?: endpos=\d{1,18})?")


class AgiError(CallControlError):
    """Root of the FastAGI errors::

    AgiError
     +-- AgiProtocolError   the peer does not speak AGI: garbage, oversize, truncated
     +-- AgiHangup          the channel hung up (HANGUP, 511) or the socket closed
     +-- AgiCommandError    Asterisk refused a command (510, 520): a bug on our side
     +-- AgiTimeout         no (complete) request or answer in time: the connection
                            is dropped, as a late answer would desynchronise it
    """

    error_id = "agi_error"


class AgiProtocolError(AgiError):
    error_id = "agi_protocol_error"


class AgiHangup(AgiError):
    error_id = "agi_hangup"


class AgiCommandError(AgiError):
    error_id = "agi_command_refused"


class AgiTimeout(AgiError):
    error_id = "agi_timeout"


@dataclass(frozen=True, slots=True)
class AgiResult:
    """One ``200 result=`` answer."""

    result: int
    data: str | None = None


@dataclass(frozen=True, slots=True)
class AgiRequest:
    """The request's environment: the script (path of the agi:// URL) and its arguments."""

    env: dict[str, str] = field(default_factory=dict)

    @property
    def script(self) -> str:
        """``authorize`` for ``agi://host:port/authorize`` (a query string dropped)."""
        script = self.env.get("agi_network_script", "")
        return script.partition("?")[0].strip("/")

    @property
    def args(self) -> list[str]:
        """``agi_arg_1``, ``agi_arg_2``, ... up to the first missing one."""
        out: list[str] = []
        while (value := self.env.get(f"agi_arg_{len(out) + 1}")) is not None:
            out.append(value)
        return out

    def arg(self, index: int) -> str:
        """The 1-based argument, stripped; empty when absent."""
        args = self.args
        return args[index - 1].strip() if 0 < index <= len(args) else ""

    def get(self, name: str) -> str:
        """An ``agi_<name>`` value; empty when absent or 'unknown' (Asterisk's word)."""
        value = self.env.get(f"agi_{name}", "")
        return "" if value == "unknown" else value


def parse_env_line(line: str) -> tuple[str, str]:
    """``agi_channel: PJSIP/x-1`` -> (``agi_channel``, ``PJSIP/x-1``); anything else is
    an AgiProtocolError that says what was wrong (never echoing a long line back)."""
    match = _ENV_LINE.fullmatch(line)
    if match is None:
        raise AgiProtocolError(f"not an AGI environment line: {_shown(line)}")
    return match[1], match[2]


def parse_result(line: str) -> AgiResult:
    """One answer line that is not HANGUP and not a 520 continuation.

    Strict: ``200 result=<int>`` with at most the data and endpos parts; 511 is the
    channel gone; 510/520 a refused command; anything else breaks the conversation.
    """
    match = _RESULT.fullmatch(line)
    if match is not None:
        return AgiResult(int(match[1]), match[2])
    if line.startswith("511"):
        raise AgiHangup("the channel is gone (511: dead channel)")
    if line.startswith(("510", "520")):
        raise AgiCommandError(f"Asterisk refused the command: {_shown(line)}")
    raise AgiProtocolError(f"not an AGI answer: {_shown(line)}")


def quote_arg(value: str) -> str:
    """One command argument in double quotes; refuses what would break the line."""
    if any(ch in value for ch in '"\\\r\n\0'):
        raise ValueError(f"cannot send {_shown(value)} as an AGI argument")
    return f'"{value}"'


def _shown(line: str, limit: int = 80) -> str:
    text = line if len(line) <= limit else line[:limit] + "..."
    return repr(text)
