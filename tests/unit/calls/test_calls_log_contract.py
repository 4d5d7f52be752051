"""The log lines the PBX tests rely on (tests/pbx/log_contract.py), made as the app makes
them and matched with the very patterns the PBX tests use: a change of wording fails
here, in a second, not in the PBX suite."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from calls_harness import CALLER, ROUTED, App
from fake_ari import APP, PASSWORD, USERNAME, FakeAri

from callcontrol.app import App as ServeApp
from callcontrol.ari import AriApplicationReplaced, AriClient, AriEventStream
from callcontrol.calls.call import Call
from callcontrol.calls.limits import PbxLimits
from callcontrol.config import load_settings
from callcontrol.errors import ConfigError
from callcontrol.ivr.loader import load_flow
from callcontrol.ivr.simulate import simulate_async
from callcontrol.logs import FORMAT, CallIdFilter, call_id_var
from callcontrol.services import Services
from callcontrol.startup import freeze_startup_objects
from callcontrol.store.db import Database
from callcontrol.web.media import media_app

CONTRACT_FILE = Path(__file__).resolve().parents[2] / "pbx" / "log_contract.py"
CARRIER = "1715000000.1"
FLOW = """\
start: main
menus:
  main:
    prompts: [beep]
    options:
      "1": {ring: alice}
    timeout: 2
    retries: 0
    on_failure: hangup
"""


def load_contract() -> ModuleType:
    spec = importlib.util.spec_from_file_location("log_contract", CONTRACT_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


contract = load_contract()


class Lines(logging.Handler):
    """The app's log as `callcontrol serve` prints it: its format, one line a line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(CallIdFilter())
        self.setFormatter(logging.Formatter(FORMAT))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(self.format(record).splitlines())

    def matches(self, pattern: re.Pattern[str]) -> list[dict[str, str | Any]]:
        found = [m.groupdict() for line in self.lines if (m := pattern.search(line))]
        assert found, f"no line matches {pattern}:\n" + "\n".join(self.lines)
        return found


@pytest.fixture
def log() -> Iterator[Lines]:
    root = logging.getLogger()
    handler, level = Lines(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


async def test_a_call_is_connected_then_released_with_nothing_left(app: App, log: Lines) -> None:
    call = await app.carrier_call(CARRIER, ROUTED)
    await app.answer(call)
    await app.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
    await app.hang_up(CARRIER)
    await app.ended(call)

    [connected] = log.matches(contract.CONNECTED)
    assert connected == {"call_id": call.call_id, "caller": CALLER, "user": "alice"}
    [released] = log.matches(contract.RELEASED)
    assert released == {
        "call_id": call.call_id,
        "tasks": "0",
        "live": "0",
        "subscriptions": "0",
    }


async def test_the_low_credit_warning(app: App, log: Lines) -> None:
    class Media:
        async def uri(self, prompt: object) -> str:
            return "sound:beep"

    call = Call("c0ffee", app.ctx, recorded=False)
    app.fake.add_channel("callee-1")
    call.channels = {"callee": "callee-1"}
    await PbxLimits(call, app.ari, Media(), "callee").warn_low_credit(3)  # type: ignore[arg-type]
    assert log.matches(contract.WARNED) == [{"role": "callee", "seconds": "3"}]


async def test_readiness_and_flow_versions_and_refusals(
    fake: FakeAri, db_url: str, tmp_path: Path, log: Lines
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    settings = load_settings(
        environ={},
        overrides={"data_dir": str(tmp_path), "flows_dir": str(flows), "ari_password": PASSWORD},
    )
    db = Database.from_url(db_url)
    ari = AriClient(fake.url, USERNAME, PASSWORD, app=APP)
    try:
        serve = ServeApp(Services(settings, db, ari, ConfigError("no payments here")))
        await serve.provision()
        assert log.matches(contract.READY) == [{"users": "2"}]

        await serve.refresh_users()
        (flows / "test.yaml").write_text(FLOW)
        serve.flows.load()
        [serves] = log.matches(contract.FLOW_SERVES)
        assert serves == {"name": "test", "version": serve.flows.version("test")}

        (flows / "test.yaml").write_text(FLOW.replace("retries: 0", "retries: 0\n    colour: red"))
        assert await serve.flows.reload() is False
        [error] = log.matches(contract.FLOW_ERROR)
        assert error["file"] == str(flows / "test.yaml")
        assert int(error["line"]) == 9 and int(error["column"]) > 0
        assert "colour" in error["message"]
    finally:
        await ari.close()
        await db.dispose()


async def test_the_flow_interpreter_trace(tmp_path: Path, log: Lines) -> None:
    (tmp_path / "test.yaml").write_text(FLOW)
    call_id_var.set("c0ffee")
    await simulate_async(load_flow(tmp_path / "test.yaml"), ["^1"])
    steps = log.matches(contract.IVR_STEP)
    assert {(s["call_id"], s["flow"]) for s in steps} == {("c0ffee", "test")}
    assert [(s["node"], s["step"]) for s in steps] == [
        ("main", "menu main"),
        ("main", "play sound:beep -> 1 (barge-in)"),
        ("main", "key 1: ring alice"),
        ("main", "ring alice -> answered"),
        ("main", "end: connected to alice"),
    ]


async def test_a_prompt_served_over_http(tmp_path: Path, log: Lines) -> None:
    (tmp_path / "tts").mkdir()
    (tmp_path / "tts" / "tts-0123abcd.wav").write_bytes(b"RIFF")
    async with TestClient(TestServer(media_app(tmp_path, tmp_path / "tts"))) as client:
        response = await client.get("/media/tts/tts-0123abcd.wav")
        assert response.status == 200
    [served] = log.matches(contract.MEDIA_SERVED)
    assert served == {"file": "tts-0123abcd.wav", "address": "127.0.0.1"}


async def test_an_instance_replaced_says_so_as_it_stops(fake: FakeAri) -> None:
    async def ignore(_: object) -> None:
        return None

    stream = AriEventStream(
        fake.url, USERNAME, PASSWORD, app=APP, dispatcher=lambda _: None, on_connected=ignore
    )
    task = asyncio.create_task(stream.run())
    await stream.wait_connected(5)
    await fake.send_application_replaced()
    with pytest.raises(AriApplicationReplaced) as raised:
        await asyncio.wait_for(task, 5)
    # `callcontrol serve` exits printing "error: <message>" (tests/unit/test_cli.py).
    match = contract.REPLACED.search(f"error: {raised.value}")
    assert match is not None and match["app"] == APP


async def test_a_workers_application_is_named_when_it_connects(
    fake: FakeAri, db_url: str, tmp_path: Path, log: Lines
) -> None:
    settings = load_settings(
        environ={},
        overrides={
            "data_dir": str(tmp_path),
            "ari_url": fake.url,
            "ari_password": PASSWORD,
            "workers": "2",
        },
    )
    db = Database.from_url(db_url)
    ari = AriClient(fake.url, USERNAME, PASSWORD, app=settings.worker_app(2))
    try:
        serve = ServeApp(Services(settings, db, ari, ConfigError("no payments here"), 2))
        assert serve.engine_only and serve.ami is None
        await serve.on_connected()
        assert log.matches(contract.ARI_APP) == [{"url": fake.url, "app": "callcontrol-2"}]
        assert not any(contract.READY.search(line) for line in log.lines)  # worker 1's job
    finally:
        await ari.close()
        await db.dispose()


def test_start_up_objects_are_frozen_out_of_the_collector(log: Lines) -> None:
    gc.unfreeze()  # whatever an earlier test froze
    try:
        frozen = freeze_startup_objects()
        assert frozen == gc.get_freeze_count() > 10_000  # the test run's modules at least
        assert log.matches(contract.FROZEN) == [{"objects": str(frozen)}]
    finally:
        gc.unfreeze()
