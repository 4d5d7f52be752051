"""The call code as the app runs it, against the fake ARI server and a real database.

``make_org`` fills a migrated SQLite database with an organisation: users alice
(1001) and bob (1002), a number routed to alice, one without routing, one routed to
the IVR flow "main", a rate table priced by the second, and credits.

``App`` builds the parts the way ``callcontrol/app.py`` does (AriClient, EventRouter,
CallStore, CallCharging over ChargingService, PromptMedia, an optional FlowRegistry,
CallContext, CallManager) and runs the real ``AriEventStream`` against the fake, with
``CallManager.adopt`` as its ``on_connected`` hook. Events reach the calls over the
WebSocket and ``EventRouter.dispatch``, as in production; ``send`` returns once the
router has dispatched the event. The charging clock is a ``ManualClock``: talk time
passes when a test says so, so costs do not depend on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fake_ari import APP, PASSWORD, USERNAME, FakeAri, Recorded, event_json, playback_json

from callcontrol.ari import AriClient, AriEventStream, Event, EventRouter
from callcontrol.billing.service import ChargingService
from callcontrol.billing.session import CallCharging, ChargingPolicy
from callcontrol.billing.wallet import Wallet
from callcontrol.calls.admission import Admission
from callcontrol.calls.call import Call
from callcontrol.calls.context import CallContext, CallEnds
from callcontrol.calls.manager import CallManager
from callcontrol.calls.media import PromptMedia
from callcontrol.calls.records import CallStore
from callcontrol.directory.service import DirectoryService
from callcontrol.domain.call_records import CallRecord
from callcontrol.domain.money import MICRO, LedgerKind
from callcontrol.ivr.registry import FlowRegistry
from callcontrol.store.db import Database
from callcontrol.store.ownership import OwnershipRepository

GUARD = 5.0  # seconds: the longest any awaited outcome may take

ROUTED = "+442079460000"  # rings alice
UNROUTED = "+442079460001"  # ours, no routing
FLOW_NUMBER = "+442079460002"  # runs the IVR flow "main"
CALLER = "+15551234567"
ABROAD = "+493012345678"  # what alice dials out to
USERS = {"alice": ("1001", "wonderland-7291"), "bob": ("1002", "builder-5813-x")}
CREDITS = 100 * MICRO

# Priced by the second so that costs follow the talk time exactly (micro-credits):
# incoming on a GB local number 0.60/min (10_000 a second) + a 10_000 fee;
# outgoing to Germany 1.20/min (20_000 a second) + a 30_000 fee.
RATES = """\
direction,prefix,country,number_type,price_per_minute,connection_fee,increments,description
inbound,,GB,local,0.600,0.010,1/1,GB local numbers receiving calls
outbound,,DE,,1.200,0.030,1/1,Germany
"""
INBOUND_FEE, INBOUND_PER_SECOND = 10_000, 10_000
OUTBOUND_FEE, OUTBOUND_PER_SECOND = 30_000, 20_000


async def make_org(template: Path, directory: Path, *, credits: int = CREDITS) -> str:
    """A copy of the migrated ``template`` database with the organisation; its URL."""
    path = directory / "callcontrol.db"
    shutil.copyfile(template, path)
    url = f"sqlite+aiosqlite:///{path}"
    rates = directory / "rates.csv"
    rates.write_text(RATES)
    db = Database.from_url(url)
    try:
        people = DirectoryService(db, "callcontrol")
        for name, (extension, password) in USERS.items():
            await people.add_user(name, extension, password)
        await people.add_number(ROUTED)
        await people.route_to_user(ROUTED, "alice")
        async with db.session() as session:  # alice presents it calling out
            await OwnershipRepository(session).assign(ROUTED, "alice", default=True)
        await people.add_number(UNROUTED)
        await people.add_number(FLOW_NUMBER)
        await people.route_to_flow(FLOW_NUMBER, "main")
        service = ChargingService(db)
        await service.import_rates(rates)
        if credits:
            await service.wallet.credit(credits, LedgerKind.PURCHASE, None, "test:credits")
    finally:
        await db.dispose()
    return url


class ManualClock:
    """The charging sessions' clock (seconds): moves only when ``advance`` is called."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class App:
    """One app instance over the fake ARI server; ``await start()``, ``await close()``."""

    def __init__(
        self,
        fake: FakeAri,
        db_url: str,
        work: Path,
        *,
        flows: bool = False,
        admission: Admission | None = None,
        pbx_node: str | None = None,
        pbx_records: CallEnds | None = None,
    ) -> None:
        self.fake = fake
        self.db = Database.from_url(db_url)
        self.store = CallStore(self.db, pbx_node)
        self.service = ChargingService(self.db)
        self.wallet: Wallet = self.service.wallet
        self.clock = ManualClock()
        self.ari = AriClient(fake.url, USERNAME, PASSWORD, app=APP)
        self.router = EventRouter()
        flows_dir = work / "flows"
        flows_dir.mkdir(exist_ok=True)
        self.flows = FlowRegistry(flows_dir) if flows else None
        self.ctx = CallContext(
            ari=self.ari,
            router=self.router,
            store=self.store,
            charging=CallCharging(
                self.service, CallStore(self.db, pbx_node), ChargingPolicy(), clock=self.clock
            ),
            media=PromptMedia("http://127.0.0.1:8099", flows_dir, work / "tts"),
            flows=self.flows,
            admission=admission,
            pbx_records=pbx_records,
        )
        self.manager = CallManager(self.ctx)
        self.stream = AriEventStream(
            fake.url,
            USERNAME,
            PASSWORD,
            app=APP,
            dispatcher=self._dispatch,
            on_connected=self.manager.adopt,
            initial_backoff=0.05,
            max_backoff=0.2,
        )
        self.dispatched = 0
        self._dispatch_seen = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> App:
        """Connect the event stream; returns once ``adopt`` has run."""
        if self.flows is not None:
            assert self.flows.load() == []
        self._task = asyncio.create_task(self.stream.run(), name="ari-events")
        await self.stream.wait_connected(GUARD)
        return self

    async def close(self) -> None:
        """Stop the event stream, then the calls still running (as a crash would)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self.manager.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.manager.tasks.values(), return_exceptions=True)
        await self.ari.close()
        await self.db.dispose()

    # ---- events from "Asterisk" -------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        self.router.dispatch(event)
        self.dispatched += 1
        self._dispatch_seen.set()

    async def send(self, event_type: str, **fields: Any) -> None:
        """Send one event over the WebSocket; returns once the router dispatched it."""
        await self.send_many([event_json(event_type, **fields)])

    async def send_many(self, events: list[dict[str, Any]]) -> None:
        target = self.dispatched + len(events)
        for event in events:
            await self.fake.send_event(event)
        async with asyncio.timeout(GUARD):
            while self.dispatched < target:
                self._dispatch_seen.clear()
                await self._dispatch_seen.wait()

    async def carrier_call(
        self, channel_id: str, number: str, caller: str = CALLER, *, ringing: bool = False
    ) -> Call:
        """The carrier delivers a call to ``number``: the call that took it. ``ringing``:
        the dialplan indicated ringing first (dialplan/extensions.conf does)."""
        self.fake.add_channel(channel_id, exten=number, caller_number=caller)
        args = ["inbound", number, *(["ringing"] if ringing else [])]
        await self.send("StasisStart", channel=self.fake.channel(channel_id), args=args)
        return self.call_of(channel_id)

    async def phone_call(self, channel_id: str, extension: str, dialled: str) -> Call:
        """A user's phone dials ``dialled``: the call that took it."""
        self.fake.add_channel(
            channel_id, name=f"PJSIP/{extension}-0000001a", caller_number=extension, exten=dialled
        )
        await self.send(
            "StasisStart", channel=self.fake.channel(channel_id), args=["outbound", dialled]
        )
        return self.call_of(channel_id)

    def call_of(self, channel_id: str) -> Call:
        for call in self.manager.calls.values():
            if channel_id in call.channels.values():
                return call
        raise AssertionError(f"no call owns channel {channel_id}")

    async def answer(self, call: Call) -> str:
        """The rung phone answers (it enters Stasis as ``dialed,<call id>``); its id."""
        callee = (await self.originated(call)).query["channelId"]
        self.fake.channels[callee]["state"] = "Up"
        await self.send(
            "StasisStart", channel=self.fake.channel(callee), args=["dialed", call.call_id]
        )
        return callee

    async def press(self, channel_id: str, digits: str) -> None:
        await self.send_many(
            [
                event_json(
                    "ChannelDtmfReceived",
                    channel=self.fake.channel(channel_id),
                    digit=digit,
                    duration_ms=100,
                )
                for digit in digits
            ]
        )

    async def finish_playback(self, channel_id: str) -> Recorded:
        """The newest playback on the channel ends; its play request."""
        play = await self.request("POST", f"/ari/channels/{channel_id}/play")
        media = play.query["media"]
        playback = playback_json(play.query["playbackId"], channel_id, media, "done")
        await self.send("PlaybackFinished", playback=playback)
        return play

    async def hang_up(self, channel_id: str, cause: int = 16) -> None:
        """The channel's side hangs up: what Asterisk sends, in its order."""
        channel = self.fake.channels.pop(channel_id)
        await self.send_many(
            [
                event_json("ChannelHangupRequest", channel=channel, cause=cause),
                event_json("StasisEnd", channel=channel),
                event_json(
                    "ChannelDestroyed", channel=channel, cause=cause, cause_txt="Normal Clearing"
                ),
            ]
        )

    # ---- what "Asterisk" was asked --------------------------------------------------

    def requests(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.fake.requests if r.method == method and r.path == path]

    async def request(self, method: str, path: str, count: int = 1) -> Recorded:
        """The newest such request, once at least ``count`` of them were received."""
        await self.fake.wait_until(lambda: len(self.requests(method, path)) >= count, GUARD)
        return self.requests(method, path)[-1]

    async def originated(self, call: Call) -> Recorded:
        """The newest phone the call rang (POST /channels naming the call), once rung."""

        def rung() -> list[Recorded]:
            ours = f"dialed,{call.call_id}"
            return [r for r in self.requests("POST", "/ari/channels") if r.query["appArgs"] == ours]

        await self.fake.wait_until(lambda: bool(rung()), GUARD)
        return rung()[-1]

    async def connected(self, call: Call, callee: str) -> None:
        """Once both are bridged and charging has started (the callee's paid-time limit
        is set): only connected time is charged, from here."""
        await self.request("POST", f"/ari/bridges/{call.call_id}/addChannel")
        await self.fake.wait_until(
            lambda: bool(self.variables_set(callee, "TIMEOUT(absolute)")), GUARD
        )

    def variables_set(self, channel_id: str, name: str) -> list[str]:
        path = f"/ari/channels/{channel_id}/variable"
        asked = self.requests("POST", path)
        return [r.query["value"] for r in asked if r.query["variable"] == name]

    # ---- outcomes -------------------------------------------------------------------

    async def ended(self, call: Call) -> CallRecord:
        """Wait for the call's task to end; its record."""
        task = self.manager.tasks.get(call.call_id)
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), GUARD)
        record = await self.store.get(call.call_id)
        assert record is not None
        return record


StartApp = Callable[..., Awaitable[App]]  # the ``start_app`` fixture
