"""The composition root: the long-lived objects of a process, built once from the settings.

    async with open_services(settings) as services:
        services.db          Database (the one engine and pool)
        services.store       CallStore: what a call reads and writes
        services.directory   DirectoryService: users, numbers, routing (pushes endpoints,
                             checks routed flows against flows_dir)
        services.admins      AdminService: console admins, sessions, API tokens, audit log
        services.charging    ChargingService: rates and the wallet
        services.funding     FundingService: payment methods, purchases, auto-recharge settings
        services.settlement  Settlement: books the provider's answers, webhooks, reconciler
        services.recharger   AutoRecharger (woken by the wallet; run by ``serve``)
        services.notifier    Notifier: the notifications outbox and its sender
        services.payments    the PaymentProvider of the settings (offline or Stripe)
        services.inventory   InventoryCatalogue: the number inventory in the database
        services.numbers     NumbersService: search, buy, release, assign (over the
                             catalogue port: the inventory, or a carrier's adapter)
        services.renewals    Renewals: numbers' rent (the scheduler in serve runs it)
        services.ari         AriClient (not connected until first used)
        services.provisioner EndpointProvisioner on that client
        services.flow_registry(...)  a FlowRegistry on the settings' flows directory

Every entry point uses it: ``callcontrol serve`` (app.py), every CLI command and
the benchmarks. Leaving the block closes the ARI client and disposes the database.
It opens the database with ``store.migrate.open_current``: a database that does not
exist, was never migrated or has another schema version is refused there, once,
with what to do (``callcontrol db upgrade``), before any command touches it.

The payment provider is built once too; when its settings are incomplete (Stripe
without keys), ``payments`` raises the ConfigError that says why, and every command
that needs no payment still works.

When no ARI password can be found (no ``ari_password`` and no secret file), the
ARI objects are not built: ``ari`` and ``provisioner`` raise the ConfigError that
says why, and the directory updates only the database, so commands that need no
PBX work without one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from callcontrol.admins import AdminService
from callcontrol.ari import AriClient
from callcontrol.billing.autorecharge import AutoRecharger
from callcontrol.billing.funding import FundingService
from callcontrol.billing.notifications import Notifier
from callcontrol.billing.service import ChargingService
from callcontrol.billing.settlement import Settlement
from callcontrol.calls.provisioning import EndpointProvisioner
from callcontrol.calls.records import CallStore
from callcontrol.carrier.inventory import InventoryCatalogue
from callcontrol.config import Settings
from callcontrol.directory.flows import FlowCatalog
from callcontrol.directory.service import DirectoryService
from callcontrol.domain.funding import Pricing, parse_delays
from callcontrol.domain.money import MICRO
from callcontrol.domain.rental import RentalPolicy
from callcontrol.errors import ConfigError
from callcontrol.ivr.registry import FlowRegistry, KnownUsers, Listener
from callcontrol.numbers.rental import NotifierNotices, Renewals
from callcontrol.numbers.service import NumbersService
from callcontrol.payments.errors import PaymentConfigError
from callcontrol.payments.port import PaymentProvider
from callcontrol.store.db import Database
from callcontrol.store.migrate import open_current
from callcontrol.store.offline_payments import DurableOfflineProvider

__all__ = ["Services", "open_services"]

log = logging.getLogger(__name__)

#: The offline provider signs its webhooks with this (no real money: not a secret).
OFFLINE_WEBHOOK_SECRET = "whsec_offline_development"


class Services:
    """The objects every entry point shares; build them with ``open_services``."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        ari: AriClient | ConfigError,
        payments: PaymentProvider | ConfigError,
        worker: int | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.worker = worker
        if worker is None:  # a command, not a serving worker: the settings' node
            self.store = CallStore(db, settings.effective_pbx_node)
        elif worker == 1:  # also the nodes of this PBX that no longer run
            others = {settings.worker_node(k) for k in range(2, settings.workers + 1)}
            self.store = CallStore(
                db,
                settings.worker_node(1),
                family=settings.effective_pbx_node,
                others=frozenset(others),
            )
        else:
            self.store = CallStore(db, settings.worker_node(worker))
        self.charging = ChargingService(db)
        self._payments = payments
        self.notifier = Notifier(db, settings.notify_webhook_url, settings.notify_webhook_secret)
        self.settlement = Settlement(
            db,
            self.charging.wallet,
            lambda: self.payments,
            self.notifier,
            retry_delays=parse_delays(settings.auto_recharge_retry_delays),
            reconcile_after=settings.payment_reconcile_after,
        )
        self.funding = FundingService(
            db,
            lambda: self.payments,
            self.settlement,
            Pricing(
                settings.credit_price_minor,
                settings.currency,
                settings.purchase_min_credits * MICRO,
                settings.purchase_max_credits * MICRO,
            ),
        )
        self.recharger = AutoRecharger(db, self.charging.wallet, self.funding, self.notifier)
        self.charging.wallet.observe(self.recharger.wake)
        self._ari = ari
        self._provisioner = (
            EndpointProvisioner(ari, settings.main_number) if isinstance(ari, AriClient) else None
        )
        self.directory = DirectoryService(
            db,
            settings.sip_realm,
            endpoints=self._provisioner,
            flows=FlowCatalog(settings.flows_dir.resolve(), default_timezone=settings.timezone),
        )
        self.admins = AdminService(db, session_ttl=timedelta(hours=settings.console_session_hours))
        policy = RentalPolicy(
            period_seconds=settings.number_rental_period,
            grace=settings.number_grace_period,
            release_after=settings.number_release_after,
            ageing=settings.number_ageing_period,
            reservation=settings.number_reservation,
        )
        self.inventory = InventoryCatalogue(db)
        self.numbers = NumbersService(
            db, self.inventory, self.charging.wallet, self.directory, policy
        )
        self.renewals = Renewals(
            db, self.charging.wallet, self.numbers, policy, NotifierNotices(db, self.notifier)
        )

    @property
    def ari_configured(self) -> bool:
        """Whether an ARI password was found (not whether Asterisk answers)."""
        return isinstance(self._ari, AriClient)

    @property
    def payments(self) -> PaymentProvider:
        """The payment provider; ConfigError when its settings are incomplete."""
        if isinstance(self._payments, ConfigError):
            raise ConfigError(str(self._payments))
        return self._payments

    @property
    def ari(self) -> AriClient:
        """The ARI client; ConfigError when no ARI password can be found."""
        if isinstance(self._ari, ConfigError):
            raise ConfigError(str(self._ari))
        return self._ari

    @property
    def provisioner(self) -> EndpointProvisioner:
        """Users' endpoints in Asterisk; ConfigError when no ARI password can be found."""
        if self._provisioner is None:
            raise ConfigError(str(self._ari))
        return self._provisioner

    def flow_registry(
        self,
        *,
        known_users: KnownUsers = None,
        sound_exists: Callable[[str], bool] | None = None,
        on_change: Listener | None = None,
    ) -> FlowRegistry:
        """A registry of the flows in ``flows_dir`` (not loaded yet), per the settings."""
        return FlowRegistry(
            self.settings.flows_dir.resolve(),
            known_users=known_users,
            sound_exists=sound_exists,
            default_timezone=self.settings.timezone,
            poll_interval=self.settings.ivr_poll_interval,
            on_change=on_change,
        )


def _ari_client(settings: Settings, worker: int | None) -> AriClient | ConfigError:
    """The ARI client (constructing it does not connect), or why there is none."""
    try:
        password = settings.effective_ari_password
    except ConfigError as exc:
        return exc
    return AriClient(
        settings.ari_url,
        settings.ari_username,
        password,
        app=settings.ari_app if worker is None else settings.worker_app(worker),
        timeout=settings.ari_timeout,
    )


def _payment_provider(settings: Settings, db: Database) -> PaymentProvider | ConfigError:
    """The provider of ``payment_provider`` (nothing is contacted yet), or why there is none."""
    if settings.payment_provider == "offline":
        return DurableOfflineProvider(db, OFFLINE_WEBHOOK_SECRET)
    from callcontrol.payments.stripe_provider import (  # noqa: PLC0415 (the SDK is slow to import)
        StripeProvider,
        StripeSettings,
    )

    try:
        return StripeProvider(
            StripeSettings(
                api_key=settings.stripe_api_key, webhook_secret=settings.stripe_webhook_secret
            )
        )
    except PaymentConfigError as exc:
        return exc


async def _close(what: str, close: Callable[[], Awaitable[None]]) -> None:
    try:
        await close()
    except Exception as exc:  # closing must not hide the outcome of the work
        log.warning("could not close the %s: %s", what, exc)


@asynccontextmanager
async def open_services(settings: Settings, worker: int | None = None) -> AsyncIterator[Services]:
    """Build the services once; close the ARI client and dispose the database on exit.
    ``worker``: the serving process's number (``serve``, setting ``workers``): its Stasis
    application and the node of its call records; None (every other command): the
    settings' ``ari_app`` and ``pbx_node`` as they are."""
    async with contextlib.AsyncExitStack() as stack:
        db = await open_current(settings.effective_database_url)
        stack.push_async_callback(_close, "database", db.dispose)
        ari = _ari_client(settings, worker)
        if isinstance(ari, AriClient):
            stack.push_async_callback(_close, "ARI client", ari.close)
        payments = _payment_provider(settings, db)
        if not isinstance(payments, ConfigError):
            stack.push_async_callback(_close, "payment provider", payments.close)
        yield Services(settings, db, ari, payments, worker)
