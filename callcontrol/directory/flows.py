"""The IVR flows as the directory sees them: can a number run this flow, who do flows ring.

``FlowCatalog(flows_dir)`` reads the flow files with the IVR loader's public
functions (``callcontrol.ivr.loader``) each time it is asked, so it always sees the
files as they are now, as the app does:

- ``check_routable(name, known_users)``: a number may be routed to a flow only if
  its file exists in ``flows_dir`` and validates against the directory's users and
  the other flows (NotFound / InvalidInput otherwise); the app refuses every call
  to a number whose flow is missing or invalid. Sounds are not checked here (they
  live on the PBX; ``callcontrol ivr validate`` checks them).
- ``ringing(user)``: the valid flows with a ``ring:`` of that user, so that removing
  the user does not silently break them.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from callcontrol.errors import InvalidInput, NotFound
from callcontrol.ivr.errors import FlowValidationError
from callcontrol.ivr.loader import load_directory, load_flow
from callcontrol.ivr.model import Action, Flow, Menu, Ring, action_targets

__all__ = ["FlowCatalog", "rings"]


def _top_actions(flow: Flow) -> list[Action]:
    actions: list[Action] = []
    for node in flow.nodes.values():
        if isinstance(node, Menu):
            actions.extend([*node.options.values(), node.on_failure])
        else:
            actions.extend([node.open, node.closed])
    return actions


def rings(flow: Flow, user: str) -> bool:
    """Whether some path of ``flow`` rings ``user``."""
    return any(
        isinstance(action, Ring) and action.user == user
        for top in _top_actions(flow)
        for action in action_targets(top)
    )


class FlowCatalog:
    """The flow files of one directory (``flows_dir``), read when asked."""

    def __init__(self, directory: Path, *, default_timezone: str = "UTC") -> None:
        self.directory = directory
        self._timezone = default_timezone

    def _names(self) -> list[str]:
        try:
            return sorted(p.stem for p in self.directory.glob("*.yaml") if p.is_file())
        except OSError:
            return []

    def check_routable(self, name: str, known_users: Collection[str]) -> None:
        """NotFound unless ``<name>.yaml`` is in the directory; InvalidInput (with its
        first error) unless it validates. ``name`` must already be a valid flow name."""
        names = self._names()
        if name not in names:
            there = ", ".join(names) if names else "none"
            raise NotFound(f"no flow {name!r} in {self.directory} (flows there: {there})")
        try:
            load_flow(
                self.directory / f"{name}.yaml",
                known_users=known_users,
                known_flows=names,
                default_timezone=self._timezone,
            )
        except FlowValidationError as exc:
            count = len(exc.errors)
            first = exc.errors[0] if exc.errors else "invalid flow"
            raise InvalidInput(
                f"flow {name!r} has {count} error{'s' if count != 1 else ''} (first: "
                f"{first}): fix it first, see `callcontrol ivr validate`"
            ) from None

    def ringing(self, user: str) -> list[str]:
        """The names of the (valid) flows that ring ``user``, sorted."""
        flows, _errors = load_directory(self.directory, default_timezone=self._timezone)
        return sorted(name for name, flow in flows.items() if rings(flow, user))
