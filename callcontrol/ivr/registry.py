"""The flows the app serves, reloaded when their files change.

``FlowRegistry(directory)`` loads every ``*.yaml`` flow at ``load()``; ``get(name)``
returns the current good version, an immutable ``Flow`` that a call keeps for its
whole life. ``run()`` polls the directory every ``poll_interval`` seconds (stat and
content hash: no inotify, works on any file system and with editors that replace
files) and reloads what changed; the reading and validating run in a worker thread
(``reload()``), so live calls never wait for a big file:

- a changed or added file is validated first, in the context of all flows of the
  directory; if valid, and if it closes no loop with no key across the flows served
  (``loops.py``), it is served from then on; if not, its errors are logged as
  ``file:line:col: message`` and the last good version (if any) keeps serving;
- a removed file removes its flow (logged, with the flows that still jump to it);
- when the known users change (``known_users`` given as a function), a flow file is
  added or removed, or a served flow changes, files that were refused are validated
  again;
- whatever goes wrong with one file (even a bug) refuses that file only, and the
  polling goes on.

``version(name)`` is the served flow's content hash. Listeners (``on_change``,
``add_listener``) are called on the event loop with (name, flow or None) after each
change.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from callcontrol.ivr import loops
from callcontrol.ivr.errors import FlowError, FlowValidationError
from callcontrol.ivr.loader import FLOW_NAME, parse_flow, read_flow_file
from callcontrol.ivr.model import Flow, GotoFlow, action_targets
from callcontrol.ivr.validate import node_actions

__all__ = ["FlowRegistry", "Listener"]

log = logging.getLogger(__name__)

Listener = Callable[[str, Flow | None], None]
KnownUsers = Collection[str] | Callable[[], Collection[str] | None] | None
LOGGED_ERRORS = 50  # per refused file; `callcontrol ivr validate` lists them all

# what a refused file is validated again after: users, flow names, served versions
_Context = tuple[frozenset[str] | None, frozenset[str], frozenset[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class _Seen:
    """The last content seen of one file, and whether it was accepted."""

    digest: str
    ok: bool


# the registry's state a look starts from: flows served, files seen, last context
_Snapshot = tuple[dict[str, Flow], dict[str, _Seen], _Context | None]


@dataclass(frozen=True, slots=True)
class _Result:
    """One file checked: its digest and the new flow, or why it is refused."""

    name: str
    digest: str
    flow: Flow | None
    errors: list[FlowError]


@dataclass(frozen=True, slots=True)
class _Scan:
    """What one look at the directory found (computed off the event loop)."""

    context: _Context
    removed: list[str]
    results: list[_Result]


class FlowRegistry:
    """The current good version of each flow of ``directory``."""

    def __init__(
        self,
        directory: str | Path,
        *,
        known_users: KnownUsers = None,
        sound_exists: Callable[[str], bool] | None = None,
        default_timezone: str = "UTC",
        poll_interval: float = 1.0,
        on_change: Listener | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._known_users = known_users
        self._sound_exists = sound_exists
        self._default_timezone = default_timezone
        self.poll_interval = poll_interval
        self._flows: dict[str, Flow] = {}
        self._seen: dict[str, _Seen] = {}
        self._errors: dict[str, list[FlowError]] = {}
        self._listeners: list[Listener] = [on_change] if on_change else []
        self._last_context: _Context | None = None

    # ---- reading ---------------------------------------------------------------------

    def get(self, name: str) -> Flow | None:
        return self._flows.get(name)

    def version(self, name: str) -> str | None:
        flow = self._flows.get(name)
        return flow.version if flow else None

    def names(self) -> list[str]:
        return sorted(self._flows)

    def errors(self) -> list[FlowError]:
        """The errors of files currently refused."""
        return sorted(e for errs in self._errors.values() for e in errs)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # ---- loading ---------------------------------------------------------------------

    def load(self) -> list[FlowError]:
        """Load every flow now (at start); returns the errors, which are also logged."""
        self.poll()
        return self.errors()

    async def run(self) -> None:
        """Poll for changes until cancelled; no error of a file or of a look stops it."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.reload()
            except OSError as exc:  # the directory went away for a moment, say
                log.warning("ivr flows: cannot read %s: %s", self.directory, exc)
            except Exception:
                log.exception("ivr flows: reload failed; the flows served are unchanged")

    async def reload(self) -> bool:
        """``poll()`` with the files read and validated in a worker thread."""
        scan = await asyncio.to_thread(self._scan, self._users(), self._snapshot())
        return self._apply(scan)

    def poll(self) -> bool:
        """Check the directory once, here; returns True if a served flow changed."""
        return self._apply(self._scan(self._users(), self._snapshot()))

    def _snapshot(self) -> _Snapshot:
        return dict(self._flows), dict(self._seen), self._last_context

    def _users(self) -> frozenset[str] | None:
        source = self._known_users
        users = source() if callable(source) else source
        return None if users is None else frozenset(users)

    # ---- the look at the directory: no change to self (it may run in a thread) --------

    def _scan(
        self,
        users: frozenset[str] | None,
        snapshot: _Snapshot,
    ) -> _Scan:
        flows, seen, last_context = snapshot
        contents = self._read_all()
        names = frozenset(contents)
        served = {n: f for n, f in flows.items() if n in names}
        context = (users, names, frozenset((n, f.version) for n, f in served.items()))
        retry = context != last_context
        results: list[_Result] = []
        for name, (path, data) in sorted(contents.items()):
            digest = _digest(data)
            last = seen.get(name)
            if last is not None and last.digest == digest and (last.ok or not retry):
                continue
            flow, errors = self._check(name, path, data, names, users, served)
            results.append(_Result(name, digest, flow, errors))
            if flow is not None:
                served[name] = flow  # the flows after it are checked beside it
        return _Scan(context, sorted(set(seen) - names), results)

    def _read_all(self) -> dict[str, tuple[Path, bytes | FlowValidationError]]:
        contents: dict[str, tuple[Path, bytes | FlowValidationError]] = {}
        for path in sorted(self.directory.glob("*.yaml")):
            if not FLOW_NAME.fullmatch(path.stem) or path.is_dir():
                continue
            try:
                contents[path.stem] = (path, read_flow_file(path))
            except FlowValidationError as exc:
                if path.exists():
                    contents[path.stem] = (path, exc)
                # else removed between glob and read: next poll sees it
        return contents

    def _check(
        self,
        name: str,
        path: Path,
        data: bytes | FlowValidationError,
        names: frozenset[str],
        users: frozenset[str] | None,
        served: dict[str, Flow],
    ) -> tuple[Flow | None, list[FlowError]]:
        """The flow if it can be served, else None and why not."""
        if isinstance(data, FlowValidationError):
            return None, data.errors
        try:
            flow, errors = parse_flow(
                data,
                file=str(path),
                name=name,
                base_dir=path.parent,
                known_users=users,
                known_flows=names,
                sound_exists=self._sound_exists,
                default_timezone=self._default_timezone,
            )
            if flow is not None and not errors:
                errors = loops.check_added(flow, served)
        except Exception as exc:  # a bug, not the admin's: refuse this file, go on
            log.exception("ivr flow %s: checking it failed", name)
            problem = f"the flow could not be checked ({type(exc).__name__}: {exc})"
            return None, [FlowError(str(path), 1, 1, problem)]
        return (None if errors else flow), errors

    # ---- applying what the look found: on the event loop ------------------------------

    def _apply(self, scan: _Scan) -> bool:
        self._last_context = scan.context
        changed = False
        for name in scan.removed:
            changed |= self._remove(name)
        for result in scan.results:
            self._seen[result.name] = _Seen(result.digest, ok=result.flow is not None)
            if result.flow is None:
                self._refuse(result.name, result.errors)
            else:
                changed |= self._accept(result.name, result.flow)
        return changed

    def _refuse(self, name: str, errors: list[FlowError]) -> None:
        self._errors[name] = errors
        kept = self._flows.get(name)
        keeps = f"version {kept.version} keeps serving" if kept else "not served"
        shown = [str(e) for e in errors[:LOGGED_ERRORS]]
        if len(errors) > LOGGED_ERRORS:
            shown.append(f"... and {len(errors) - LOGGED_ERRORS} more (callcontrol ivr validate)")
        log.error(
            "ivr flow %s refused (%d errors; %s):\n%s", name, len(errors), keeps, "\n".join(shown)
        )

    def _accept(self, name: str, flow: Flow) -> bool:
        self._errors.pop(name, None)
        old = self._flows.get(name)
        if old is not None and old.version == flow.version:
            return False
        self._flows[name] = flow
        if old is None:
            log.info("ivr flow %s loaded (version %s)", name, flow.version)
        else:
            log.info("ivr flow %s reloaded: version %s -> %s", name, old.version, flow.version)
        self._notify(name, flow)
        return True

    def _remove(self, name: str) -> bool:
        self._seen.pop(name, None)
        self._errors.pop(name, None)
        old = self._flows.pop(name, None)
        if old is None:
            return False
        users = sorted(n for n, f in self._flows.items() if name in _flow_jumps(f))
        also = f"; flows still jumping to it: {', '.join(users)}" if users else ""
        log.warning("ivr flow %s removed (its file is gone)%s", name, also)
        self._notify(name, None)
        return True

    def _notify(self, name: str, flow: Flow | None) -> None:
        for listener in self._listeners:
            try:
                listener(name, flow)
            except Exception:
                log.exception("ivr flow listener failed for %s", name)


def _flow_jumps(flow: Flow) -> set[str]:
    out: set[str] = set()
    for node in flow.nodes.values():
        for top, _silent, _label in node_actions(node):
            out.update(a.flow for a in action_targets(top) if isinstance(a, GotoFlow))
    return out


def _digest(data: bytes | FlowValidationError) -> str:
    if isinstance(data, FlowValidationError):  # the same problem is not logged again
        return "unreadable: " + str(data)
    return hashlib.sha256(data).hexdigest()
