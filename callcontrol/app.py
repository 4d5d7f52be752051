"""The app behind ``callcontrol serve``: builds the call handling on the services and runs it.

    Services (services.py): Database -> CallStore, ChargingService (rates, wallet)
                            AriClient -> EndpointProvisioner
    here:    ChargingService + CallStore -> CallCharging (a session per rated call)
             -> FlowRegistry (ivr_flows/, hot reload) -> PromptMedia <- MediaServer (HTTP)
             -> EventRouter <- AriEventStream
             -> PbxRecords (the CDR file) <- AmiFeed (Hangup events)
             -> CallContext -> CallManager (InboundCall / AdoptedCall per call)
             Services + CallManager.snapshot -> the admin console (web/console, HTTP)
             Metrics (metrics.py) <- hooks in calls, charging, ARI; /metrics, /readyz on
             the console's server (web/health.py)
             Settlement -> /webhooks/<provider> on the MediaServer; AutoRecharger, Notifier

Start-up (``open_services`` has checked that the schema is current): serve prompts
over HTTP, load the flows, connect ARI (the event stream retries with backoff until
Asterisk answers), and on every (re)connect provision the users' endpoints and
re-adopt or settle our calls.
While running: flows are re-read when edited; numbers' rent is charged on their
anniversaries; the wallet is watched so credits added
by any process extend live calls (a rate table imported by any process is picked up
by the next call's quote). Funding runs beside the calls, never in their path: the
auto-recharger (woken by this process's wallet writes and by the wallet watch), the
payments reconciler, the notifications sender and, with the offline provider, the
delivery of its webhooks to our own endpoint.
SIGTERM/SIGINT: stop taking calls, detach the calls in progress (they stay up in
Asterisk, which still enforces their paid time), close everything, exit 0.

With the setting ``workers`` = N > 1 this process is one of N sharing the PBX's calls
(``Services.worker``, workers.py starts them): worker 1 runs everything above; workers
2..N run the call engine only (ARI events, calls, charging, flows, the wallet watch):
no console, media server, webhooks, AMI, provisioning, funding or rent, which worker 1
does once for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from callcontrol.ami.client import AmiFeed
from callcontrol.ami.records import PbxRecords
from callcontrol.ari import AriEventStream, EventRouter
from callcontrol.billing.session import CallCharging, ChargingPolicy
from callcontrol.calls.admission import Admission, AdmissionLimits
from callcontrol.calls.context import CallContext
from callcontrol.calls.manager import CallManager
from callcontrol.calls.media import PromptMedia, says_in
from callcontrol.domain.directory import User
from callcontrol.errors import AriError, CallControlError, ConfigError, StoreError
from callcontrol.hardening import console_tls, refuse_published_passwords, warn_exposed
from callcontrol.ivr.model import Flow
from callcontrol.ivr.sounds import sounds_in_dir, system_sounds_dir
from callcontrol.metrics import Metrics
from callcontrol.pbx.devpbx import DevPbx, cdr_path
from callcontrol.pbx.dialplan import dialplan_workers
from callcontrol.services import Services
from callcontrol.startup import freeze_startup_objects
from callcontrol.store.offline_payments import DurableOfflineProvider
from callcontrol.web.console.app import ConsoleServer, console_app
from callcontrol.web.health import Health
from callcontrol.web.media import MediaServer
from callcontrol.web.webhooks import add_routes, deliver_offline_webhooks
from callcontrol.workers import Workers, watch_parent

log = logging.getLogger(__name__)

#: ARI event types the app asks Asterisk not to send (``App._filter_events``): none of
#: the call states reads them (they reach a call's inbox and are skipped). A feature that
#: starts reading one must take it off this list.
UNUSED_EVENTS = (
    "ChannelVarset",  # 35 of a routed call's ~54 events: every variable set, BRIDGEPEER...
    "ChannelStateChange",
    "ChannelEnteredBridge",
    "ChannelLeftBridge",
    "Dial",
    "BridgeCreated",
    "BridgeDestroyed",
    "ChannelConnectedLine",
    "ChannelCallerId",
    "ChannelDialplan",
    "PlaybackStarted",  # 2 of an IVR call's 12 (the prompt, the ringing tone): Finished says it
)

WATCH_INTERVAL = 1.0  # seconds between checks of the wallet for credits added


class App:
    """The running app on ``services`` (their owner closes them after ``run``)."""

    def __init__(self, services: Services, workers: Workers | None = None) -> None:
        settings = services.settings
        self.workers = workers  # worker 1 of several: starts and keeps the others
        self.settings = settings
        self.worker = services.worker or 1
        self.ari = services.ari
        password = settings.effective_ari_password
        self.db = services.db
        self.store = services.store
        self.charging = services.charging
        self.router = EventRouter()
        flows_dir = settings.flows_dir.resolve()
        self.media = PromptMedia(settings.effective_media_url, flows_dir, settings.tts_cache_dir)
        self.media_server = MediaServer(settings.media_listen, flows_dir, settings.tts_cache_dir)
        self.services = services
        add_routes(self.media_server.app, services.settlement)
        self.known_users: set[str] | None = None  # None until read: the check is skipped
        sounds_dir = system_sounds_dir(settings.pbx_root)
        self.sounds: set[str] = sounds_in_dir(sounds_dir) if sounds_dir else set()
        self.flows = services.flow_registry(
            known_users=lambda: self.known_users,
            sound_exists=lambda name: not self.sounds or name in self.sounds,
            on_change=self._flow_changed,
        )
        limits = AdmissionLimits(
            settings.overload_setup_calls,
            settings.overload_loop_lag,
            settings.overload_ari_latency,
            settings.overload_setup_delay,
        )
        self.admission = Admission(limits, ari_latency=self.ari.lateness)
        self.metrics = Metrics()
        self.pbx_records = PbxRecords(cdr_path(settings))
        self.ami = None if self.engine_only else self._ami_feed()
        self.ctx = CallContext(
            ari=self.ari,
            router=self.router,
            store=self.store,
            charging=CallCharging(
                self.charging,
                self.store,
                ChargingPolicy(settings.charge_interval, settings.credit_warning),
                metrics=self.metrics,
            ),
            media=self.media,
            flows=self.flows,
            ring_timeout=settings.ring_timeout,
            timezone=ZoneInfo(settings.timezone),
            country=settings.country,
            main_number=settings.main_number,
            admission=self.admission,
            metrics=self.metrics,
            pbx_records=self.pbx_records,
        )
        self.calls = CallManager(self.ctx)
        self.provisioner = services.provisioner
        self.renewals = services.renewals
        self.stream = AriEventStream(
            settings.ari_url,
            settings.ari_username,
            password,
            app=self.ari.app,
            dispatcher=self.router.dispatch,
            on_connected=self.on_connected,
        )
        self._watch()
        health = Health(self.db.ping, lambda: self.stream.is_connected, self.metrics)
        self.console = ConsoleServer(
            settings.console_listen,
            console_app(services, live_calls=self.calls, health=health),
            ssl_context=console_tls(settings),
        )
        self.stopping = asyncio.Event()
        self._pending_prompts: list[Flow] = []

    @property
    def engine_only(self) -> bool:
        """Workers 2..N: calls only (worker 1 does the rest once for all)."""
        return self.worker > 1

    def _watch(self) -> None:
        """Point the metrics at what they count (metrics.py: the hot path only increments)."""
        metrics = self.metrics
        self.ari.observer = metrics.ari_request
        self.admission.on_lag = metrics.observe_loop_lag
        metrics.watch_calls(self.calls.counts_by_direction)
        admission = self.admission
        metrics.watch_admission(lambda: admission.in_setup, lambda: admission.overloaded)
        metrics.watch_ari(lambda: self.stream.is_connected)

        async def wallet() -> tuple[int, int]:
            state = await self.charging.wallet.balance()
            return state.balance, state.held

        metrics.watch_wallet(wallet)

    def _ami_feed(self) -> AmiFeed | None:
        """The AMI connection that hears hang-ups (PbxRecords); None without a secret."""
        settings = self.settings
        try:
            secret = settings.effective_ami_password
        except ConfigError as exc:
            log.warning("AMI is not used: %s", exc)
            return None
        host, port = settings.effective_ami_address
        return AmiFeed(
            host,
            port,
            settings.ami_username,
            secret,
            events="call",
            on_event=self.pbx_records.on_event,
            timeout=settings.ari_timeout,
            max_backoff=settings.ami_reconnect_max,
        )

    # ---- flows and prompts -------------------------------------------------------------

    def _flow_changed(self, name: str, flow: Flow | None) -> None:
        if flow is None:
            log.info("flow %s removed: numbers routed to it refuse calls", name)
            return
        log.info("flow %s (version %s) now serves new calls", name, flow.version)
        self._pending_prompts.append(flow)

    async def prompt_loop(self) -> None:
        """Synthesize the speech of new flow versions ahead of the calls that need it."""
        while True:
            while self._pending_prompts:
                flow = self._pending_prompts.pop(0)
                await self.media.prepare(says_in(flow))
            await asyncio.sleep(self.settings.ivr_poll_interval)

    async def refresh_users(self) -> list[User]:
        """The users from the database; flows are validated against their names."""
        users = await self.store.users()
        self.known_users = {user.name for user in users}
        return users

    async def provision(self) -> None:
        """Push every user's SIP endpoint into Asterisk and remove stale ones."""
        try:
            users = await self.refresh_users()
            await self.provisioner.sync_all(users, await self.store.presented_numbers())
        except (AriError, StoreError) as exc:
            log.error("could not provision users' endpoints: %s", exc)

    # ---- ARI ------------------------------------------------------------------------------

    async def on_connected(self) -> None:
        """After every (re)connect: endpoints first (phones can register), then calls."""
        log.info(
            "connected to Asterisk ARI at %s as app %r",
            self.settings.ari_url,
            self.ari.app,
        )
        await self._filter_events()
        self.metrics.ari_connected()
        if self.engine_only:
            try:  # the flows are checked against the users' names; worker 1 provisions
                await self.refresh_users()
            except StoreError as exc:
                log.error("could not read the users: %s", exc)
        else:
            await self.provision()
        await self._read_sounds()
        await self.calls.adopt()

    async def _filter_events(self) -> None:
        """No ``UNUSED_EVENTS``: Asterisk sends ~54 events for a routed call, ``ChannelVarset``
        alone 35 of them (every variable set on a channel in the application, its own
        BRIDGEPEER and friends included); the calls read about 7. Each was serialised by
        Asterisk, parsed and routed by the app. Without the filter (an Asterisk that
        refuses it) calls work the same, at a higher CPU cost."""
        try:
            await self.ari.filter_events(UNUSED_EVENTS)
        except AriError as exc:
            log.warning("could not filter ARI events (%s): receiving them all", exc)

    async def _read_sounds(self) -> None:
        """The PBX's own list of sounds is the one flows are checked against."""
        try:
            sounds = await self.ari.request("GET", "/sounds")
        except AriError as exc:
            log.warning("could not list the PBX's sounds: %s", exc)
            return
        names = {item["id"] for item in sounds or [] if isinstance(item, dict) and "id" in item}
        if names:
            self.sounds = names

    async def provision_loop(self) -> None:
        """Re-check the endpoints now and then: changes from the CLI or other instances."""
        while True:
            await asyncio.sleep(self.settings.provision_interval)
            if self.stream.is_connected:
                await self.provision()

    async def watch_loop(self) -> None:
        """Credits added by any process extend live calls; debits by any process may be
        due for an auto-recharge."""
        last_entry: int | None = None
        while True:
            self.services.recharger.wake()
            try:
                entry = await self.charging.wallet.last_credit_id()
                if last_entry is not None and entry != last_entry:
                    self.calls.credits_changed()
                last_entry = entry
            except StoreError as exc:
                log.warning("wallet watch: %s", exc)
            await asyncio.sleep(WATCH_INTERVAL)

    # ---- funding --------------------------------------------------------------------------

    async def reconcile_loop(self) -> None:
        """Payments left without an answer (a timeout, a crash) are resolved, from start on."""
        settlement = self.services.settlement
        while True:
            try:
                await settlement.reconcile()
            except CallControlError as exc:
                log.warning("payments reconciler: %s", exc)
            await asyncio.sleep(min(max(settlement.reconcile_after / 2, 1.0), 60.0))

    def funding_tasks(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        services = self.services
        try:
            provider = services.payments
        except ConfigError as exc:
            log.warning("payments are off: %s", exc)
            return []
        tasks = [
            tg.create_task(services.recharger.run(), name="auto-recharge"),
            tg.create_task(services.notifier.run(), name="notifications"),
            tg.create_task(self.reconcile_loop(), name="payments-reconciler"),
        ]
        if isinstance(provider, DurableOfflineProvider):
            host = "127.0.0.1" if self.media_server.host == "0.0.0.0" else self.media_server.host
            url = f"http://{host}:{self.media_server.port}/webhooks/offline"
            delivery = deliver_offline_webhooks(provider, url)
            tasks.append(tg.create_task(delivery, name="offline-webhooks"))
        return tasks

    async def rental_loop(self) -> None:
        """Numbers' rent on their anniversaries (numbers/rental.py: once per number and
        period whatever the number of processes; catches up after downtime)."""
        while True:
            try:
                await self.renewals.renew_due()
            except CallControlError as exc:
                log.warning("number rent: %s", exc)
            await asyncio.sleep(self.settings.number_renew_interval)

    # ---- run ------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.db.ping()
        log.info("database %s ready", self.db.url)
        refuse_published_passwords(self.settings, await self.refresh_users())
        await self.charging.load_rates()
        self.flows.load()
        log.info("flows loaded: %s", ", ".join(self.flows.names()) or "none")
        self._check_dialplan()
        if self.engine_only:
            await self._run_engine()
            return
        await self.media_server.start()
        warn_exposed(self.settings)
        try:
            await self.console.start()
        except ConfigError:
            with contextlib.suppress(Exception):
                await self.media_server.stop()
            raise
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.flows.run(), name="flows"),
                    tg.create_task(self.prompt_loop(), name="prompts"),
                    tg.create_task(self.provision_loop(), name="provisioning"),
                    tg.create_task(self.watch_loop(), name="wallet-watch"),
                    *self.funding_tasks(tg),
                    tg.create_task(self.rental_loop(), name="number-rent"),
                    tg.create_task(self.admission.run(), name="load"),
                ]
                if self.ami is not None:
                    tasks.append(tg.create_task(self.ami.run(), name="ami"))
                if self.workers is not None:
                    tasks.append(tg.create_task(self.workers.run(), name="workers"))
                await self._calls_until_stopped(tg, tasks)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            with contextlib.suppress(Exception):
                await self.console.stop()
            with contextlib.suppress(Exception):
                await self.media_server.stop()
        log.info("stopped")

    async def _calls_until_stopped(
        self, tg: asyncio.TaskGroup, tasks: Sequence[asyncio.Task[object]]
    ) -> None:
        """Take calls from the ARI events until stopped (or the stream ends); then detach
        from the calls in progress (they stay up) and cancel ``tasks``."""
        freeze_startup_objects()
        stream = tg.create_task(self.stream.run(), name="ari-events")
        stop = tg.create_task(self.stopping.wait(), name="stop")
        await asyncio.wait({stream, stop}, return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping: calls in progress stay up and are re-adopted at next start")
        await self.calls.shutdown(detach=True)
        for task in (*tasks, stream, stop):
            task.cancel()

    def _check_dialplan(self) -> None:
        """Say it when the development PBX's dialplan was written for other workers than
        run (``pbx up`` after a change of ``workers``): calls would miss workers, or all
        fail when it names one application and several run."""
        settings = self.settings
        if self.engine_only:
            return  # worker 1 says it
        written = dialplan_workers(DevPbx(settings).etc)  # None: no PBX of ours on this host
        if written not in (None, (settings.workers, settings.ari_app)):
            log.error(
                "the PBX's dialplan spreads calls for workers = %d, ari_app = %s, but "
                "workers = %d, ari_app = %s run: run `callcontrol pbx up` with these settings",
                *written,
                settings.workers,
                settings.ari_app,
            )

    async def _run_engine(self) -> None:
        """Workers 2..N: the calls of this worker's Stasis application, nothing else."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.flows.run(), name="flows"),
                    tg.create_task(self.watch_loop(), name="wallet-watch"),
                    tg.create_task(self.admission.run(), name="load"),
                    tg.create_task(watch_parent(self.stopping.set), name="worker-1"),
                ]
                await self._calls_until_stopped(tg, tasks)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("stopped")
