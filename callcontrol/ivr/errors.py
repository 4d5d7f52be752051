"""Errors of the IVR package, in the project's tree (callcontrol/errors.py).

    InvalidInput
     └── FlowValidationError   a flow file is invalid: every FlowError at once
    CallControlError
     ├── TtsError              the TTS engine (espeak-ng) is missing or failed
     └── GraphError            graphviz (dot) is missing or failed

``FlowError`` is one problem at a place in a file, rendered ``path:line:col: message``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from callcontrol.errors import CallControlError, InvalidInput

__all__ = ["FlowError", "FlowValidationError", "GraphError", "TtsError"]


@dataclass(frozen=True, slots=True, order=True)
class FlowError:
    """One problem in a flow file; line and column are 1-based."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class FlowValidationError(InvalidInput):
    """A flow file is invalid; ``errors`` holds every problem, sorted."""

    error_id = "flow_invalid"

    def __init__(self, errors: Iterable[FlowError]) -> None:
        self.errors: list[FlowError] = sorted(errors)
        super().__init__("\n".join(str(e) for e in self.errors) or "invalid flow")


class TtsError(CallControlError):
    error_id = "tts_error"


class GraphError(CallControlError):
    error_id = "graph_error"
