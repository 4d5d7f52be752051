"""The dialplan that spreads calls over the app's workers (setting ``workers``).

``callcontrol pbx up`` writes ``extensions_workers_carrier.conf`` (carrier calls, in
``from-carrier``) and ``extensions_workers_users.conf`` (users' calls, in
``from-users-app``), included by dialplan/extensions.conf ahead of the single app's
extensions. With one worker they hold no extension: calls go to ``Stasis(callcontrol,
...)`` exactly as before. With N workers, each new call picks the next worker in turn
(a global counter: round robin; two calls at the same instant may pick the same one)
and enters its application ``<ari_app>-<K>``; when that worker is not connected,
Stasis returns at once with STASISSTATUS=FAILED and the call tries the next worker,
then ``<ari_app>`` itself (a single app with a stale dialplan), and only when all failed
it takes the fail-closed path (``stasis-returned``: "all circuits are busy", cause 34).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from callcontrol.config import Settings

__all__ = ["WORKERS_FILES", "dialplan_workers", "workers_conf"]

Side = Literal["carrier", "users"]

#: file name -> the side of the dialplan it serves
WORKERS_FILES: dict[str, Side] = {
    "extensions_workers_carrier.conf": "carrier",
    "extensions_workers_users.conf": "users",
}

# Stasis' arguments, the NoOp's text, the steps before the round robin. A carrier's
# caller hears ringing at once (180 Ringing, no ARI request for it); the app learns it
# from the argument "ringing" (dialplan/extensions.conf).
_ENTRY: dict[Side, tuple[str, str, tuple[str, ...]]] = {
    "carrier": (
        "inbound,${EXTEN},ringing",
        "inbound call to ${EXTEN} from ${CALLERID(num)}",
        ("Ringing()",),
    ),
    "users": ("outbound,${EXTEN}", "outbound call to ${EXTEN} from ${CHANNEL(endpoint)}", ()),
}


def workers_conf(settings: Settings, side: Side) -> str:
    """One side's extensions for ``settings.workers`` (none with one worker)."""
    count = settings.workers
    app = settings.ari_app  # letters, digits, '.', '_', '-' (checked by the settings)
    stasis_args, note, first_steps = _ENTRY[side]
    lines = [f"; written by `callcontrol pbx up` for workers = {count}, ari_app = {app}"]
    if count == 1:
        lines.append(f"; one worker: calls go to Stasis({app},...) in callcontrol-app-{side}")
        return "\n".join(lines) + "\n"
    lines.append(
        f"; round robin over {app}-1..{app}-{count}; a worker not connected passes the "
        "call on to the next"
    )
    pick = f"$[0${{GLOBAL(CALLCONTROL_NEXT_WORKER)}} % {count} + 1]"
    for pattern in ("_X.", "_+X."):
        lines += [
            f"exten => {pattern},1,NoOp({note})",
            *(f" same => n,{step}" for step in first_steps),
            f" same => n,Set(CALLCONTROL_WORKER={pick})",
            " same => n,Set(GLOBAL(CALLCONTROL_NEXT_WORKER)=${CALLCONTROL_WORKER})",
        ]
        for step in range(count):
            if step == 0:
                worker = "${CALLCONTROL_WORKER}"
            elif step == 1:
                worker = f"$[${{CALLCONTROL_WORKER}} % {count} + 1]"
            else:
                worker = f"$[(${{CALLCONTROL_WORKER}} + {step - 1}) % {count} + 1]"
            lines += [
                f" same => n,Stasis({app}-{worker},{stasis_args})",
                ' same => n,GotoIf($["${STASISSTATUS}" != "FAILED"]?stasis-returned,s,1)',
            ]
        lines += [
            f" same => n,Stasis({app},{stasis_args})",
            " same => n,Goto(stasis-returned,s,1)",
        ]
    return "\n".join(lines) + "\n"


_HEADER = re.compile(r"; written by `callcontrol pbx up` for workers = (\d+), ari_app = (\S+)")


def dialplan_workers(etc: Path) -> tuple[int, str] | None:
    """The workers and ari_app the dialplan in Asterisk's ``etc`` was written for; None
    when there is none to read (not written by ``pbx up``, or another host's PBX)."""
    try:
        first = (etc / "extensions_workers_carrier.conf").read_text().partition("\n")[0]
    except OSError:
        return None
    match = _HEADER.fullmatch(first)
    return (int(match[1]), match[2]) if match else None
