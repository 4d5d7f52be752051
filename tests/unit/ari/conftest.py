"""The ARI client's tests: its connections and its event stream run on both event loops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop

# `serve` runs on uvloop (setting event_loop), whose transports are not asyncio's
# classes: the lean HTTP client and the events WebSocket must work on either loop.
BOTH_LOOPS = ("test_ari_http.py", "test_ari_stream.py")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.path.name in BOTH_LOOPS:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
