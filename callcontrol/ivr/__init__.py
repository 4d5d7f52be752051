"""IVR flows: files admins edit, validated with positions, run on calls.

    model.py        the flow as frozen values (Flow, Menu, TimeSwitch, actions, prompts)
    loader.py       YAML -> model, every error as file:line:col (build.py, yamlnodes.py,
                    validate.py, cycles.py), within limits (../yamllimits.py)
    loops.py        loops with no key across flows (a's on_failure -> b -> a)
    interpreter.py  runs a flow on a call through a CallPort (port.py); knows no ARI
    simulate.py     a scripted CallPort: the path a caller takes, without a PBX
    registry.py     the served flows, reloaded when their files change
    sounds.py       the Asterisk sounds a flow may name
    tts.py          say: prompts, spoken by espeak-ng into cached 8 kHz WAV
    graph.py        a flow as a picture (graphviz)

The file format is documented in ivr_flows/README.md.
"""

from callcontrol.ivr.errors import FlowError, FlowValidationError
from callcontrol.ivr.interpreter import FlowOutcome, OutcomeKind, run_flow
from callcontrol.ivr.loader import load_directory, load_flow
from callcontrol.ivr.model import Flow
from callcontrol.ivr.port import CallerHungUp, CallPort, DigitBuffer, RingOutcome
from callcontrol.ivr.registry import FlowRegistry

__all__ = [
    "CallPort",
    "CallerHungUp",
    "DigitBuffer",
    "Flow",
    "FlowError",
    "FlowOutcome",
    "FlowRegistry",
    "FlowValidationError",
    "OutcomeKind",
    "RingOutcome",
    "load_directory",
    "load_flow",
    "run_flow",
]
