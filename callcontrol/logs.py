"""Logging: every line carries the call id of the call it is about.

The call id lives in a context variable that each call sets in its own task, so
every task the call starts (playbacks, timers, the final charge) inherits it and
library code logging through ``getLogger(__name__)`` gets it too.
"""

from __future__ import annotations

import contextvars
import logging
import sys

call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="-")

FORMAT = "%(asctime)s %(levelname)-7s [%(call_id)s] %(name)s: %(message)s"


class CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = call_id_var.get()
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallIdFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log and debug chatter would drown the call lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
