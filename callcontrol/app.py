"""The composition root: builds every object from the settings and runs the app.

    Settings -> Database -> CallStore ----------------------+
             -> AriClient -> EndpointProvisioner            |
             -> EventRouter <- AriEventStream               v
                           -> CallManager (InboundCall / AdoptedCall per call)

Start-up: check the schema is current, connect ARI (the event stream retries with
backoff until Asterisk answers), and on every (re)connect provision the users'
endpoints and re-adopt our calls. SIGTERM/SIGINT: stop taking calls, detach the
calls in progress (they stay up in Asterisk), close everything, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from callcontrol.ari import AriClient, AriEventStream, EventRouter
from callcontrol.calls.manager import CallManager
from callcontrol.calls.provisioning import EndpointProvisioner
from callcontrol.calls.records import CallStore
from callcontrol.config import Settings
from callcontrol.errors import AriError, ConfigError, StoreError
from callcontrol.store import migrate
from callcontrol.store.db import Database

log = logging.getLogger(__name__)


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        password = settings.effective_ari_password
        self.db = Database.from_url(settings.effective_database_url)
        self.store = CallStore(self.db)
        self.ari = AriClient(
            settings.ari_url,
            settings.ari_username,
            password,
            app=settings.ari_app,
            timeout=settings.ari_timeout,
        )
        self.router = EventRouter()
        self.calls = CallManager(self.ari, self.router, self.store, settings.ring_timeout)
        self.provisioner = EndpointProvisioner(self.ari)
        self.stream = AriEventStream(
            settings.ari_url,
            settings.ari_username,
            password,
            app=settings.ari_app,
            dispatcher=self.router.dispatch,
            on_connected=self.on_connected,
        )
        self.stopping = asyncio.Event()

    def check_schema(self) -> None:
        """Refuse to serve on a database whose schema is not the current one."""
        url = self.settings.effective_database_url
        have, want = migrate.current(url), migrate.head()
        if have != want:
            raise ConfigError(
                f"the database {self.db.url} is at schema {have or 'none'}, not {want}: "
                "run `callcontrol db upgrade`"
            )

    async def on_connected(self) -> None:
        """After every (re)connect: endpoints first (phones can register), then calls."""
        log.info(
            "connected to Asterisk ARI at %s as app %r",
            self.settings.ari_url,
            self.settings.ari_app,
        )
        try:
            await self.provisioner.sync_all(await self.store.users())
        except (AriError, StoreError) as exc:
            log.error("could not provision users' endpoints: %s", exc)
        await self.calls.adopt()

    async def provision_loop(self) -> None:
        """Re-check the endpoints now and then: changes from the CLI or other instances."""
        while True:
            await asyncio.sleep(self.settings.provision_interval)
            if not self.stream.is_connected:
                continue
            try:
                await self.provisioner.sync_all(await self.store.users())
            except (AriError, StoreError) as exc:
                log.warning("endpoint re-check failed: %s", exc)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.db.ping()
        log.info("database %s ready", self.db.url)
        try:
            async with asyncio.TaskGroup() as tg:
                stream = tg.create_task(self.stream.run(), name="ari-events")
                loop_task = tg.create_task(self.provision_loop(), name="provisioning")
                stop = tg.create_task(self.stopping.wait(), name="stop")
                await asyncio.wait({stream, stop}, return_when=asyncio.FIRST_COMPLETED)
                log.info("stopping: calls in progress stay up and are re-adopted at next start")
                await self.calls.shutdown(detach=True)
                for task in (stream, loop_task, stop):
                    task.cancel()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            with contextlib.suppress(Exception):
                await self.ari.close()
            with contextlib.suppress(Exception):
                await self.db.dispose()
        log.info("stopped")
