"""The IVR flow files as the console edits them, through ``callcontrol.ivr``'s public API.

- ``statuses``: every flow file with its validation status and errors (as
  ``callcontrol ivr validate`` would report them);
- ``check``/``save``: flow text from the browser is validated in the context of the
  other flows (unknown users, menus, flows; loops across flows) and, only when
  valid, written atomically: a temporary file in the same directory, fsync'd, then
  ``os.replace``. The running app's registry picks the new version up at its next
  poll, exactly as for an edit made in a text editor;
- ``graph_svg`` and ``simulate`` run ``ivr.graph`` and ``ivr.simulate``.

Everything that touches files or runs graphviz runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from callcontrol.errors import InvalidInput, NotFound
from callcontrol.ivr import loops
from callcontrol.ivr.errors import FlowError, FlowValidationError
from callcontrol.ivr.graph import draw
from callcontrol.ivr.loader import (
    FLOW_NAME,
    MAX_FILE_BYTES,
    load_directory,
    parse_flow,
    read_flow_file,
)
from callcontrol.ivr.model import Flow
from callcontrol.ivr.port import RingOutcome
from callcontrol.ivr.simulate import parse_keys, simulate_async

__all__ = ["FlowFiles", "FlowStatus"]

SIMULATION_DEADLINE = 5.0  # seconds; a simulated caller never waits for real


@dataclass(frozen=True, slots=True)
class FlowStatus:
    name: str
    errors: list[FlowError]

    @property
    def valid(self) -> bool:
        return not self.errors


def _name(name: str) -> str:
    if not FLOW_NAME.fullmatch(name):
        raise InvalidInput(
            f"flow name {name[:80]!r}: 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


class FlowFiles:
    def __init__(
        self,
        directory: Path,
        *,
        timezone: str,
        sound_exists: Callable[[str], bool] | None = None,
    ) -> None:
        self.directory = directory
        self.timezone = timezone
        self.sound_exists = sound_exists

    def path(self, name: str) -> Path:
        return self.directory / f"{_name(name)}.yaml"

    def names(self) -> list[str]:
        try:
            return sorted(
                p.stem
                for p in self.directory.glob("*.yaml")
                if FLOW_NAME.fullmatch(p.stem) and not p.is_dir()
            )
        except OSError:
            return []

    # ---- reading and checking --------------------------------------------------------------

    async def statuses(self, known_users: Collection[str] | None) -> list[FlowStatus]:
        flows, errors = await asyncio.to_thread(self._load_all, known_users)
        by_file: dict[str, list[FlowError]] = {}
        for error in errors:
            by_file.setdefault(Path(error.file).stem, []).append(error)
        names = sorted(set(flows) | set(by_file) | set(self.names()))
        return [FlowStatus(n, by_file.get(n, [])) for n in names]

    def _load_all(
        self, known_users: Collection[str] | None
    ) -> tuple[dict[str, Flow], list[FlowError]]:
        return load_directory(
            self.directory,
            known_users=known_users,
            sound_exists=self.sound_exists,
            default_timezone=self.timezone,
        )

    async def read(self, name: str) -> str:
        path = self.path(name)
        if not path.exists():
            raise NotFound(f"no flow {name!r} in {self.directory}")
        data = await asyncio.to_thread(read_flow_file, path)
        return data.decode("utf-8", errors="replace")

    async def load(self, name: str, known_users: Collection[str] | None = None) -> Flow:
        """The flow, valid; FlowValidationError with its errors otherwise."""
        flows, errors = await asyncio.to_thread(self._load_all, known_users)
        mine = [e for e in errors if Path(e.file).stem == name]
        if mine:
            raise FlowValidationError(mine)
        flow = flows.get(_name(name))
        if flow is None:
            raise NotFound(f"no flow {name!r} in {self.directory}")
        return flow

    async def check(
        self, name: str, text: str, *, known_users: Collection[str] | None
    ) -> tuple[Flow | None, list[FlowError]]:
        """Validate ``text`` as the flow ``name`` beside the other flows of the directory."""
        path = self.path(name)
        data = text.replace("\r\n", "\n")
        if len(data.encode()) > MAX_FILE_BYTES:
            problem = f"the flow is over {MAX_FILE_BYTES} bytes (split it into flows)"
            return None, [FlowError(str(path), 1, 1, problem)]
        others, _errors = await asyncio.to_thread(self._load_all, known_users)
        others.pop(name, None)
        known_flows = {*self.names(), name}

        def parse() -> tuple[Flow | None, list[FlowError]]:
            flow, errors = parse_flow(
                data,
                file=str(path),
                name=name,
                base_dir=self.directory,
                known_users=known_users,
                known_flows=known_flows,
                sound_exists=self.sound_exists,
                default_timezone=self.timezone,
            )
            if flow is not None and not errors:
                errors = loops.check_added(flow, others)
            return (None if errors else flow), errors

        return await asyncio.to_thread(parse)

    # ---- writing -----------------------------------------------------------------------

    async def save(
        self, name: str, text: str, *, known_users: Collection[str] | None
    ) -> tuple[Flow, bool]:
        """Write the flow if it validates; (the flow, whether the file is new)."""
        flow, errors = await self.check(name, text, known_users=known_users)
        if flow is None:
            raise FlowValidationError(errors)
        path = self.path(name)
        created = not path.exists()
        await asyncio.to_thread(_write_atomically, path, text.replace("\r\n", "\n"))
        return flow, created

    # ---- pictures and simulation ---------------------------------------------------------

    async def graph_svg(self, name: str) -> bytes:
        flow = await self.load(name)

        def render() -> bytes:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "flow.svg"
                draw(flow, out)
                return out.read_bytes()

        return await asyncio.to_thread(render)

    async def simulate(
        self,
        name: str,
        keys: str,
        *,
        at: str | None,
        ring: Mapping[str, RingOutcome],
        extensions: Mapping[str, str] | None,
    ) -> list[str]:
        flows, _errors = await asyncio.to_thread(self._load_all, None)
        flow = await self.load(name)
        try:
            async with asyncio.timeout(SIMULATION_DEADLINE):
                outcome = await simulate_async(
                    flow,
                    parse_keys(keys),
                    at=at or None,
                    ring=ring,
                    extensions=extensions,
                    resolve=flows.get,
                )
        except TimeoutError:
            raise InvalidInput(
                f"the simulation did not end within {SIMULATION_DEADLINE:g} s"
            ) from None
        return [str(step) for step in outcome.steps]


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
