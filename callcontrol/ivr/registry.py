"""The flows the app serves, reloaded when their files change.

``FlowRegistry(directory)`` loads every ``*.yaml`` flow at ``load()``; ``get(name)``
returns the current good version, an immutable ``Flow`` that a call keeps for its
whole life. ``run()`` polls the directory every ``poll_interval`` seconds (stat and
content hash: no inotify, works on any file system and with editors that replace
files) and reloads what changed:

- a changed or added file is validated first, in the context of all flows of the
  directory; if valid, it is served from then on; if not, every error is logged
  as ``file:line:col: message`` and the last good version (if any) keeps serving;
- a removed file removes its flow (logged, with the flows that still jump to it);
- when the known users change (``known_users`` given as a function) or a flow file
  is added or removed, files that were refused are validated again.

``version(name)`` is the served flow's content hash. Listeners (``on_change``,
``add_listener``) are called with (name, flow or None) after each change.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from callcontrol.ivr.errors import FlowError, FlowValidationError
from callcontrol.ivr.loader import FLOW_NAME, load_flow
from callcontrol.ivr.model import Flow, GotoFlow, action_targets
from callcontrol.ivr.validate import node_actions

__all__ = ["FlowRegistry", "Listener"]

log = logging.getLogger(__name__)

Listener = Callable[[str, Flow | None], None]
KnownUsers = Collection[str] | Callable[[], Collection[str] | None] | None


@dataclass(slots=True)
class _Seen:
    """The last content seen of one file, and whether it was accepted."""

    digest: str
    ok: bool


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
        self._last_users: frozenset[str] | None = None
        self._last_names: set[str] = set()

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
        """Poll for changes until cancelled."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                self.poll()
            except OSError as exc:  # the directory went away for a moment, say
                log.warning("ivr flows: cannot read %s: %s", self.directory, exc)

    def poll(self) -> bool:
        """Check the directory once; returns True if a served flow changed."""
        contents = self._read_all()
        users = self._users()
        context_changed = users != self._last_users or set(contents) != self._last_names
        self._last_users = users
        self._last_names = set(contents)
        changed = False
        for name in sorted(set(self._seen) - set(contents)):
            changed |= self._remove(name)
        known_flows = set(contents)
        for name, (path, data) in sorted(contents.items()):
            digest = hashlib.sha256(data).hexdigest()
            seen = self._seen.get(name)
            if seen is not None and seen.digest == digest and (seen.ok or not context_changed):
                continue
            self._seen[name] = _Seen(digest, ok=False)
            changed |= self._try_load(name, path, known_flows, users)
        return changed

    def _read_all(self) -> dict[str, tuple[Path, bytes]]:
        contents: dict[str, tuple[Path, bytes]] = {}
        for path in sorted(self.directory.glob("*.yaml")):
            if not FLOW_NAME.fullmatch(path.stem):
                continue
            try:
                contents[path.stem] = (path, path.read_bytes())
            except (FileNotFoundError, IsADirectoryError):
                continue  # removed between glob and read: next poll sees it
        return contents

    def _users(self) -> frozenset[str] | None:
        source = self._known_users
        users = source() if callable(source) else source
        return None if users is None else frozenset(users)

    def _try_load(
        self, name: str, path: Path, known_flows: set[str], users: frozenset[str] | None
    ) -> bool:
        try:
            flow = load_flow(
                path,
                known_users=users,
                known_flows=known_flows,
                sound_exists=self._sound_exists,
                default_timezone=self._default_timezone,
            )
        except FlowValidationError as exc:
            self._errors[name] = exc.errors
            kept = self._flows.get(name)
            keeps = f"version {kept.version} keeps serving" if kept else "not served"
            log.error(
                "ivr flow %s refused (%d errors; %s):\n%s",
                name,
                len(exc.errors),
                keeps,
                "\n".join(str(e) for e in exc.errors),
            )
            return False
        self._errors.pop(name, None)
        self._seen[name].ok = True
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
