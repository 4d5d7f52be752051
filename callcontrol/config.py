"""Settings: one flat list, read once, in layers.

Order (later wins): built-in defaults, the TOML config file, environment variables
``CALLCONTROL_<SETTING>`` (upper case), then command-line overrides. The config file
is the one named by ``--config``, else ``$CALLCONTROL_CONFIG``, else
``./callcontrol.toml`` when it exists. Every setting is documented in
``Settings`` below and listed by ``callcontrol config show``; unknown keys are an
error that names the key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from callcontrol.domain.funding import parse_delays
from callcontrol.domain.text import cut, shown
from callcontrol.errors import ConfigError

ENV_PREFIX = "CALLCONTROL_"
DEFAULT_CONFIG_FILE = Path("callcontrol.toml")
SECRET_SETTINGS = frozenset(
    {
        "ari_password",
        "ami_password",
        "database_url",
        "stripe_api_key",
        "stripe_webhook_secret",
        "notify_webhook_secret",
    }
)

# Values that reach Asterisk (its .conf files, ARI, SIP headers) are plain tokens: no
# white space, no ';' (a comment in a .conf file), no brackets, quotes or commas.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_REALM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63})*")
_PORT = re.compile(r"[0-9]{1,5}")
_E164 = re.compile(r"\+[1-9][0-9]{5,14}")


class Settings(BaseModel):
    """Every setting of callcontrol, with its default and meaning."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    data_dir: Path = Field(
        Path("var"),
        description="Where the app keeps its files: the SQLite database, the ARI and AMI secrets "
        "written by `callcontrol pbx up`, logs of the development PBX.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL. Empty: SQLite at <data_dir>/callcontrol.db. "
        "PostgreSQL: postgresql+asyncpg://user:pass@host/db.",
    )
    ari_url: str = Field("http://127.0.0.1:8088", description="Base URL of Asterisk's HTTP server.")
    ari_username: str = Field(
        "callcontrol", description="ARI user (ari.conf): letters, digits, '.', '_', '-'."
    )
    ari_password: str = Field(
        "",
        description="ARI password. Empty: read from <data_dir>/ari.secret, which "
        "`callcontrol pbx up` generates. Printable ASCII without spaces or ';'. Never logged.",
    )
    ari_app: str = Field(
        "callcontrol", description="Stasis application name: letters, digits, '.', '_', '-'."
    )
    ari_timeout: float = Field(5.0, gt=0, le=120, description="Timeout of one ARI request, s.")
    pbx_node: str = Field(
        "",
        description="Name of the PBX this app serves, written into each call record: with "
        "several PBXes on one database an app re-adopts and settles only its own PBX's "
        "calls. Unique per PBX, stable across restarts. Empty: this host's name.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=16,
        description="Processes that share this PBX's calls (one core each). 1: one process, "
        "Stasis application ari_app. N > 1: `serve` runs worker 1 (everything) and starts "
        "workers 2..N (calls only); worker K is the application <ari_app>-<K> and names its "
        "records <pbx_node>/<K>. Run `callcontrol pbx up` after a change: the dialplan "
        "spreads the calls over the N applications.",
    )
    ami_bind: str = Field(
        "127.0.0.1:5038",
        description="Where the development PBX's manager interface (AMI) listens: IPv4 "
        "address:port. Loopback unless you need it from another host.",
    )
    ami_address: str = Field(
        "",
        description="Where the app reaches AMI: host:port. Empty: ami_bind.",
    )
    ami_username: str = Field(
        "callcontrol", description="AMI user (manager.conf): letters, digits, '.', '_', '-'."
    )
    ami_password: str = Field(
        "",
        description="AMI secret. Empty: read from <data_dir>/ami.secret, which "
        "`callcontrol pbx up` generates. Printable ASCII without spaces or ';'. Never logged.",
    )
    ami_permit: str = Field(
        "127.0.0.1/32",
        description="Comma-separated addresses/CIDRs the AMI user may log in from.",
    )
    ami_reconnect_max: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Longest wait, s, between AMI reconnection attempts (the back-off "
        "doubles up to it).",
    )
    cdr_file: str = Field(
        "",
        description="The PBX's call detail records (cdr_custom, dialplan/cdr_custom.conf) that "
        "settle calls which ended while no app was connected. Empty: the development PBX's "
        "log dir; 'none': not used (the restart time is the end, as without it).",
    )
    ari_bind: str = Field(
        "127.0.0.1:8088",
        description="Where the development PBX's HTTP server (ARI) listens, IPv4 address:port "
        "(http.conf). Loopback unless you set another address.",
    )
    sip_realm: str = Field(
        "callcontrol",
        description="SIP digest realm (a name or domain); users' password digests are bound to it.",
    )
    sip_bind: str = Field(
        "127.0.0.1:5060", description="PJSIP UDP transport, IPv4 address:port (dev PBX)."
    )
    carrier_ips: str = Field(
        "127.0.0.1",
        description="Comma-separated source addresses/CIDRs that identify the carrier "
        "trunk; calls from there are incoming calls to the organisation's numbers.",
    )
    sip_permit: str = Field(
        "127.0.0.0/8",
        description="Comma-separated addresses/CIDRs that may send SIP to the PBX at all "
        "(users' phones register and call from there); the carrier_ips are always "
        "permitted; everything else gets 403 before any password is checked "
        "(pjsip_local.conf, type=acl). 0.0.0.0/0: anyone.",
    )
    sip_tls: bool = Field(
        False,
        description="Also offer SIP over TLS (PJSIP transport-tls on sip_tls_bind); `pbx up` "
        "generates a self-signed certificate unless sip_tls_cert/sip_tls_key are set.",
    )
    sip_tls_bind: str = Field(
        "127.0.0.1:5061", description="The SIP TLS transport, IPv4 address:port (dev PBX)."
    )
    sip_tls_cert: Path | None = Field(
        None,
        description="PEM certificate (chain) of the SIP TLS transport. Empty: "
        "<data_dir>/tls/sip.crt, self-signed by `callcontrol pbx up`.",
    )
    sip_tls_key: Path | None = Field(
        None,
        description="PEM private key of sip_tls_cert. Empty: <data_dir>/tls/sip.key.",
    )
    ring_timeout: int = Field(30, ge=1, le=600, description="Seconds a user's phone rings.")
    provision_interval: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds between re-checks of users' SIP endpoints in Asterisk.",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="The event loop of the long-running commands (serve, agi): uvloop (libuv; "
        "about a tenth less CPU per call, bench/RESULTS.md round 6) or Python's asyncio. "
        "uvloop falls back to asyncio, with a warning, where it is not installed.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Least severe log lines written to standard error."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text: `time level [call id] logger: message`; json: one JSON object a "
        "line (time, level, logger, call_id, message, exception).",
    )
    pbx_root: Path = Field(
        Path("/var/cache/callcontrol/rootfs"),
        description="Root file system of the development PBX (Debian sid + Asterisk 22).",
    )
    pbx_mirror: str = Field("http://deb.debian.org/debian", description="Debian mirror for it.")
    pbx_mode: Literal["auto", "chroot", "host"] = Field(
        "auto",
        description="auto: a host Asterisk when installed, else the chroot; or force one.",
    )
    pbx_dialplan_dir: Path = Field(
        Path(__file__).resolve().parent.parent / "dialplan",
        description="The Asterisk configuration `callcontrol pbx up` installs.",
    )
    pbx_boot_timeout: float = Field(
        60.0, gt=0, le=3600, description="Seconds to wait for Asterisk."
    )
    flows_dir: Path = Field(Path("ivr_flows"), description="Directory of IVR flow files.")
    timezone: str = Field(
        "Europe/London",
        description="The organisation's time zone (IANA name): IVR open hours use it.",
    )
    media_listen: str = Field(
        "127.0.0.1:8099",
        description="Where the app serves prompts (recordings, speech) over HTTP to Asterisk: "
        "host:port.",
    )
    media_url: str = Field(
        "",
        description="How Asterisk reaches that server. Empty: http://<media_listen>. "
        "Set it when Asterisk runs on another host.",
    )
    charge_interval: int = Field(
        60,
        ge=10,
        le=3600,
        description="Seconds between debits of a live call; the slice of credits held ahead.",
    )
    credit_warning: int = Field(
        60,
        ge=0,
        le=600,
        description="Seconds before the credits run out that the user hears a warning "
        "(the outside party does not); 0: no warning.",
    )
    console_listen: str = Field(
        "127.0.0.1:8080",
        description="Where `callcontrol serve` serves the admin console and its JSON API "
        "(/api/v1): host:port. Put a TLS proxy in front of it to reach it from elsewhere.",
    )
    console_session_hours: float = Field(
        12.0, gt=0, le=720, description="Hours a console sign-in lasts."
    )
    agi_listen: str = Field(
        "127.0.0.1:4573",
        description="Where `callcontrol agi` (FastAGI, for dialplan-driven deployments) "
        "listens: host:port. Keep it on loopback or a private network: AGI has no "
        "authentication.",
    )
    agi_timeout: float = Field(
        5.0,
        gt=0,
        le=120,
        description="Seconds `callcontrol agi` waits for a request's headers or for "
        "Asterisk's answer to one AGI command before it drops the connection.",
    )
    agi_authorize_timeout: float = Field(
        3.0,
        gt=0,
        le=60,
        description="Seconds an AGI authorize may take (database work); past it the call "
        "is refused (status failed) and nothing stays held.",
    )
    agi_max_duration: int = Field(
        3600,
        ge=10,
        le=86400,
        description="Longest talk time, s, of a call authorized over AGI: its whole cost "
        "(or what the wallet has) is held at authorize, as no debits run during the call.",
    )
    console_tls_cert: Path | None = Field(
        None,
        description="PEM certificate (chain): the console and its API are served over HTTPS "
        "(with console_tls_key). `callcontrol tls self-signed` makes one for trials.",
    )
    console_tls_key: Path | None = Field(
        None, description="PEM private key of console_tls_cert (keep it 0600)."
    )
    ivr_poll_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between checks of the flow files for edits."
    )
    payment_provider: Literal["offline", "stripe"] = Field(
        "offline",
        description="Who takes payments: offline (test cards, no real money; for development "
        "and tests) or stripe.",
    )
    stripe_api_key: str = Field(
        "", description="Stripe secret (sk_...) or restricted (rk_...) API key. Never logged."
    )
    stripe_publishable_key: str = Field(
        "",
        description="Stripe publishable key (pk_...): given to the console's card form "
        "(Stripe.js) to save a card. Not a secret.",
    )
    stripe_webhook_secret: str = Field(
        "",
        description="Signing secret (whsec_...) of the Stripe webhook endpoint "
        "<server>/webhooks/stripe. Never logged.",
    )
    credit_price_minor: int = Field(
        100,
        ge=1,
        le=1_000_000_000,
        description="Price of one credit in the currency's smallest unit (cents).",
    )
    currency: str = Field("eur", description="ISO 4217 code of the currency credits are sold in.")
    purchase_min_credits: int = Field(
        1, ge=1, le=1_000_000, description="Fewest credits one purchase or recharge may buy."
    )
    purchase_max_credits: int = Field(
        10_000, ge=1, le=1_000_000, description="Most credits one purchase or recharge may buy."
    )
    payment_reconcile_after: float = Field(
        120.0,
        gt=0,
        le=86_400,
        description="Seconds after which a payment with no final answer (a timeout, a crash) "
        "is asked again, with the same idempotency key.",
    )
    auto_recharge_retry_delays: str = Field(
        "3600,21600,86400",
        description="Seconds to wait after the 1st, 2nd, ... soft card decline of "
        "auto-recharge before trying again (comma-separated).",
    )
    notify_webhook_url: str = Field(
        "",
        description="Where low-balance and auto-recharge notifications are POSTed (JSON, "
        "signed). Empty: they are only logged.",
    )
    notify_webhook_secret: str = Field(
        "",
        description="Key of the HMAC-SHA256 signature of those notifications "
        "(header Callcontrol-Signature: t=<time>,v1=<hex>). Never logged.",
    )
    country: str = Field(
        "GB",
        description="The organisation's country (ISO 3166 alpha-2): its emergency numbers "
        "go straight to the carrier (`callcontrol pbx up` writes them into the dialplan).",
    )
    main_number: str = Field(
        "",
        description="The organisation's main number (E.164), presented by emergency calls "
        "of users who have no assigned number. Empty: their extension.",
    )
    number_rental_period: int = Field(
        0,
        ge=0,
        le=366 * 86400,
        description="Seconds between a number's rent charges; 0: a calendar month, on the "
        "purchase's anniversary (a few seconds: for tests and trials).",
    )
    number_grace_period: int = Field(
        7 * 86400,
        ge=0,
        le=366 * 86400,
        description="Seconds a number's rent may stay unpaid before the number is "
        "suspended (refuses calls).",
    )
    number_release_after: int = Field(
        30 * 86400,
        ge=0,
        le=366 * 86400,
        description="Seconds a suspended number waits for its rent before it is released.",
    )
    number_ageing_period: int = Field(
        90 * 86400,
        ge=0,
        le=3 * 366 * 86400,
        description="Seconds a released number ages before the catalogue offers it again.",
    )
    number_reservation: int = Field(
        600,
        ge=10,
        le=86400,
        description="Seconds the catalogue holds a number for a purchase in progress.",
    )
    number_renew_interval: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="Seconds between the rent scheduler's runs in `callcontrol serve`.",
    )
    overload_setup_calls: int = Field(
        200,
        ge=1,
        le=100_000,
        description="Overload control: new calls are refused (before answer, cause 34) "
        "while this many calls are in setup (not yet connected).",
    )
    overload_loop_lag: float = Field(
        0.1,
        gt=0,
        le=60,
        description="Overload control: new calls are refused while the app's event loop "
        "runs this many seconds late.",
    )
    overload_setup_delay: float = Field(
        0.5,
        gt=0,
        le=60,
        description="Overload control: new calls are refused while calls take this many "
        "seconds (smoothed) from arrival to ringing the user or answering into a flow.",
    )
    overload_ari_latency: float = Field(
        0.5,
        gt=0,
        le=60,
        description="Overload control: new calls are refused while ARI requests take "
        "this many seconds (smoothed).",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _plain_value(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[info.field_name or ""].annotation
        if isinstance(value, bool) and annotation in (int, float):
            raise ValueError("must be a number, not true or false")
        if isinstance(value, str) and not value.isprintable():
            raise ValueError("must not contain line breaks or other control characters")
        if annotation is Path and isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty (write . for the current directory)")
        return value

    @field_validator("stripe_publishable_key")
    @classmethod
    def _publishable_key(cls, value: str) -> str:
        if value and not re.fullmatch(r"pk_(test|live)_[A-Za-z0-9]{1,250}", value):
            raise ValueError("must be a Stripe publishable key: pk_test_... or pk_live_...")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
            raise ValueError("unknown time zone (use an IANA name, e.g. Europe/London)") from None
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        code = value.strip().upper()
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("must be an ISO 3166 two-letter country code, e.g. GB, US, DE")
        return code

    @field_validator("main_number")
    @classmethod
    def _main_number(cls, value: str) -> str:
        if not value:
            return value
        try:
            number = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            number = None
        if not _E164.fullmatch(value) or number is None or not phonenumbers.is_valid_number(number):
            raise ValueError("must be a valid number in E.164 form, e.g. +442079460000")
        return value

    @field_validator("ari_username", "ari_app", "ami_username")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("pbx_node")
    @classmethod
    def _node(cls, value: str) -> str:
        if value and not _NAME.fullmatch(value):
            raise ValueError(
                "must be empty (this host's name) or 1 to 64 letters, digits, '.', '_' or "
                "'-', starting with a letter or digit"
            )
        return value

    @field_validator("sip_realm")
    @classmethod
    def _realm(cls, value: str) -> str:
        if not _REALM.fullmatch(value):
            raise ValueError(
                "must be 1 to 128 letters, digits, '.', '_', '@' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("ari_password", "ami_password")
    @classmethod
    def _password(cls, value: str, info: ValidationInfo) -> str:
        if value:
            user = "ami_username" if info.field_name == "ami_password" else "ari_username"
            problem = ari_password_problem(value, info.data.get(user, ""))
            if problem:
                raise ValueError(problem)
        return value

    @field_validator(
        "sip_tls_cert", "sip_tls_key", "console_tls_cert", "console_tls_key", mode="before"
    )
    @classmethod
    def _optional_path(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _tls_pairs(self) -> Settings:
        for cert, key in (("console_tls_cert", "console_tls_key"), ("sip_tls_cert", "sip_tls_key")):
            if (getattr(self, cert) is None) != (getattr(self, key) is None):
                raise ValueError(f"{cert} and {key} are set together, or neither")
        return self

    @model_validator(mode="after")
    def _worker_names(self) -> Settings:
        suffix = len(f"-{self.workers}") if self.workers > 1 else 0
        for name in ("ari_app", "pbx_node"):
            if len(getattr(self, name)) + suffix > 64:
                raise ValueError(
                    f"{name} must be at most {64 - suffix} characters with workers = "
                    f"{self.workers} (a worker's name adds '-<K>' or '/<K>')"
                )
        return self

    def worker_app(self, worker: int) -> str:
        """Worker ``worker``'s Stasis application: ``ari_app`` itself with one worker."""
        return self.ari_app if self.workers == 1 else f"{self.ari_app}-{worker}"

    def worker_node(self, worker: int) -> str:
        """The node worker ``worker`` writes into its call records and re-adopts: the PBX's
        (``effective_pbx_node``) with one worker, ``<node>/<K>`` with several ('/' never
        appears in a PBX's own name, so a worker's node is never another PBX's)."""
        node = self.effective_pbx_node
        if self.workers == 1:
            return node
        suffix = f"/{worker}"
        return node[: 64 - len(suffix)] + suffix

    @field_validator("sip_bind", "ari_bind", "sip_tls_bind", "ami_bind")
    @classmethod
    def _ipv4_and_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            host = ""
        if not host or not _valid_port(port):
            raise ValueError("must be an IPv4 address and a port, e.g. 0.0.0.0:5060")
        return value

    @field_validator("media_listen", "console_listen", "agi_listen", "ami_address")
    @classmethod
    def _host_and_port(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name == "ami_address" and not value:
            return value  # derived from ami_bind
        host, _, port = value.rpartition(":")
        if not _HOST.fullmatch(host) or not _valid_port(port):
            raise ValueError("must be a host (IPv4 address or name) and a port, e.g. 0.0.0.0:8099")
        return value

    @field_validator("carrier_ips", "ami_permit", "sip_permit")
    @classmethod
    def _networks(cls, value: str) -> str:
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        if not entries:
            raise ValueError("needs at least one IP address or network, e.g. 203.0.113.10")
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{shown(entry)} is not an IP address or network (CIDR, e.g. 198.51.100.0/24)"
                ) from None
        return ",".join(entries)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{3}", value):
            raise ValueError("must be a 3-letter ISO 4217 code, e.g. eur")
        return value.lower()

    @field_validator("purchase_max_credits")
    @classmethod
    def _max_over_min(cls, value: int, info: ValidationInfo) -> int:
        if value < info.data.get("purchase_min_credits", 1):
            raise ValueError("must not be below purchase_min_credits")
        return value

    @field_validator("auto_recharge_retry_delays")
    @classmethod
    def _delays(cls, value: str) -> str:
        return ",".join(str(delay) for delay in parse_delays(value))

    @field_validator("notify_webhook_url")
    @classmethod
    def _notify_url(cls, value: str) -> str:
        problem = _url_problem(value) if value else ""
        if problem and "query" not in problem:  # a token in the query string is fine here
            raise ValueError(problem)
        return value

    @field_validator("ari_url", "media_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name == "media_url" and not value:
            return value  # derived from media_listen
        problem = _url_problem(value)
        if problem:
            raise ValueError(problem)
        return value.rstrip("/")

    @property
    def effective_media_url(self) -> str:
        return (self.media_url or f"http://{self.media_listen}").rstrip("/") + "/media"

    @property
    def tts_cache_dir(self) -> Path:
        return self.data_dir / "tts"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'callcontrol.db').resolve()}"

    @property
    def effective_pbx_node(self) -> str:
        """The PBX's name in call records: the setting, else this host's name (stable
        where one app runs beside each PBX; two PBXes on one host must set it)."""
        if self.pbx_node:
            return self.pbx_node
        host = socket.gethostname().partition(".")[0][:64]
        return host if _NAME.fullmatch(host) else "pbx"

    @property
    def ari_secret_file(self) -> Path:
        return self.data_dir / "ari.secret"

    @property
    def ami_secret_file(self) -> Path:
        return self.data_dir / "ami.secret"

    @property
    def effective_ami_address(self) -> tuple[str, int]:
        host, _, port = (self.ami_address or self.ami_bind).rpartition(":")
        return host, int(port)

    @property
    def effective_ami_password(self) -> str:
        if self.ami_password:
            return self.ami_password
        try:
            secret = self.ami_secret_file.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(
                f"no AMI secret: set CALLCONTROL_AMI_PASSWORD or run `callcontrol pbx up` "
                f"(it writes {self.ami_secret_file})"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read {self.ami_secret_file}: {exc.strerror}") from exc
        if not secret:
            raise ConfigError(f"{self.ami_secret_file} is empty: no AMI secret")
        return secret

    @property
    def sip_tls_files(self) -> tuple[Path, Path]:
        """The SIP TLS certificate and key: the configured ones, else the generated ones."""
        if self.sip_tls_cert is not None and self.sip_tls_key is not None:
            return self.sip_tls_cert, self.sip_tls_key
        return self.data_dir / "tls" / "sip.crt", self.data_dir / "tls" / "sip.key"

    @property
    def effective_ari_password(self) -> str:
        if self.ari_password:
            return self.ari_password
        try:
            secret = self.ari_secret_file.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(
                f"no ARI password: set CALLCONTROL_ARI_PASSWORD or run `callcontrol pbx up` "
                f"(it writes {self.ari_secret_file})"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read {self.ari_secret_file}: {exc.strerror}") from exc
        if not secret:
            raise ConfigError(f"{self.ari_secret_file} is empty: no ARI password")
        problem = ari_password_problem(secret, self.ari_username)
        if problem:
            raise ConfigError(
                f"refusing the ARI password in {self.ari_secret_file}: it {problem}; delete the "
                "file and run `callcontrol pbx up` to generate one"
            )
        return secret

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, for display and logs."""
        out: dict[str, Any] = {}
        for key, raw in self.model_dump().items():
            value = raw
            if key in SECRET_SETTINGS and raw:
                value = _redact_url(raw) if key == "database_url" else "********"
            out[key] = str(value) if isinstance(value, Path) else "" if value is None else value
        return out


#: Passwords shipped in samples and tutorials (Asterisk's ari.conf.sample, docker examples):
#: the first ones a scanner tries. Compared case-insensitively.
KNOWN_DEFAULT_PASSWORDS = frozenset(
    {
        "asterisk",
        "password",
        "passw0rd",
        "secret",
        "changeme",
        "change-me",
        "changeit",
        "admin",
        "callcontrol",
        "default",
        "letmein",
        "s3cret",
        "test",
        "ari",
        "1234",
        "12345",
        "123456",
        "12345678",
        "123456789",
        "1234567890",
        "wonderland-7291",  # the demo users' passwords, once published in the README
        "builder-5813-x",
    }
)
MIN_ARI_PASSWORD_LENGTH = 12


def ari_password_problem(password: str, username: str = "") -> str:
    """What makes ``password`` unfit as the ARI password, or "": empty, a known default,
    the user name, too short, or not writable into ari.conf. ARI controls every call and
    Asterisk's configuration, so a guessable password is refused, never warned about."""
    if not password:
        return "is empty"
    if password.lower() in KNOWN_DEFAULT_PASSWORDS or (
        username and password.lower() == username.lower()
    ):
        return "is a well-known default (or the user name); generate one: openssl rand -hex 24"
    if len(password) < MIN_ARI_PASSWORD_LENGTH:
        return f"is shorter than {MIN_ARI_PASSWORD_LENGTH} characters"
    if not password_fits_asterisk(password):
        return "must be printable ASCII without spaces or ';'"
    return ""


def password_fits_asterisk(password: str) -> bool:
    """Printable ASCII without spaces or ';': safe in ari.conf and in HTTP basic auth."""
    return bool(password) and all("!" <= c <= "~" for c in password) and ";" not in password


def is_loopback(listen: str) -> bool:
    """Whether ``host:port`` (or a bare host) listens on this machine's loopback only."""
    host = listen.rpartition(":")[0] if ":" in listen else listen
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: whatever it resolves to


def _valid_port(text: str) -> bool:
    return bool(_PORT.fullmatch(text)) and 1 <= int(text) <= 65535


def _url_problem(url: str) -> str:
    """What is wrong with an http(s) URL of a server, or ''."""
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if any(c.isspace() or c in ',;"' for c in url):
        return "must not contain white space, ',', ';' or '\"'"
    parts = urlsplit(url)
    if not parts.hostname:
        return "has no host"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "has an invalid port (1 to 65535)"
    if parts.username is not None or parts.password is not None:
        return "must not contain a user name or password (see ari_username, ari_password)"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    return ""


def _redact_url(url: str) -> str:
    """The URL with any password masked: in the user part and in the query string."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        user, has_password, _ = creds.partition(":")
        netloc = f"{user}:********@{host}" if has_password else netloc
    query = [
        (key, "********" if key.lower() in {"password", "pass", "passwd"} else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    new_query = urlencode(query, safe="*")
    if netloc == parts.netloc and query == parse_qsl(parts.query, keep_blank_values=True):
        return url  # nothing secret: keep the URL exactly as written
    return urlunsplit(parts._replace(netloc=netloc, query=new_query))


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, file, environment and overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    source: dict[str, str] = {}

    path = config_file
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"])
    if path is None and DEFAULT_CONFIG_FILE.exists():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        try:
            with path.open("rb") as fh:
                from_file = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text: {exc.reason}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        for key, value in from_file.items():
            values[key] = value
            source[key] = f"config file {cut(str(path), limit=1024)}"

    problems: list[str] = []
    known = set(Settings.model_fields)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in known:
            problems.append(
                f"unknown setting {shown(key)} (from environment variable {cut(name)}; "
                f"every {ENV_PREFIX}* variable is a setting)"
            )
            continue
        values[key] = value
        source[key] = f"environment variable {name}"

    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            source[key] = "--set on the command line"

    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problems += [_problem(err, values, source) for err in exc.errors()]
    if problems:
        raise ConfigError("; ".join(problems))
    return settings


def _problem(err: ErrorDetails, values: Mapping[str, Any], source: Mapping[str, str]) -> str:
    """One line: the setting, what is wrong with it, what was given and where."""
    if not err["loc"]:  # a rule across settings (a model validator) names them itself
        return err["msg"].removeprefix("Value error, ")
    key = str(err["loc"][0])
    where = f" (from {source[key]})" if key in source else ""
    if err["type"] == "extra_forbidden":
        return f"unknown setting {shown(key)}{where}"
    text = err["msg"].removeprefix("Value error, ")
    given = "" if key in SECRET_SETTINGS or key not in values else f", got {shown(values[key])}"
    return f"setting {key!r}: {text}{given}{where}"
