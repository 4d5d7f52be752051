"""Logging: every line carries the call id of the call it is about.

The call id lives in a context variable that each call sets in its own task, so
every task the call starts (playbacks, timers, the final charge) inherits it and
library code logging through ``getLogger(__name__)`` gets it too.

Two formats (the setting ``log_format``): ``text``, one line of ``time level [call
id] logger: message``, and ``json``, one JSON object per line for log shippers:
``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``call_id`` (null
outside calls), ``message``, and ``exception`` (the traceback as one string) when
there is one. Both format the same message: what keeps secrets out of the text
(URLs redacted by the store, the ARI password never formatted) keeps them out of
the JSON.

With several processes on one PBX (the setting ``workers`` > 1) each line names its
process: ``logger@w<K>`` in the text (``... [call id] callcontrol.calls.inbound@w2:
...``), ``"worker": K`` in the JSON.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="-")

FORMAT = "%(asctime)s %(levelname)-7s [%(call_id)s] %(name)s: %(message)s"
LogFormat = Literal["text", "json"]


class CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = call_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (no newline inside: tracebacks are escaped)."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        call_id = getattr(record, "call_id", "-")
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "call_id": None if call_id == "-" else call_id,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            out["worker"] = self.worker
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(
    level: str = "INFO",
    log_format: LogFormat = "text",
    stream: TextIO | None = None,
    worker: int | None = None,
) -> None:
    """Log to ``stream`` (standard error) in ``log_format``, from ``level`` up; ``worker``:
    this process's number among several on one PBX (None: the only one)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(CallIdFilter())
    text = FORMAT if worker is None else FORMAT.replace("%(name)s", f"%(name)s@w{worker}")
    formatter = JsonFormatter(worker) if log_format == "json" else logging.Formatter(text)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Neither format prints a record's source file, line, function, thread or process:
    # do not collect them (finding the caller's frame and the thread's name was a third
    # of the CPU of a call's log line; the logging HOWTO, "Optimization").
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    # aiohttp's access log and debug chatter would drown the call lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
