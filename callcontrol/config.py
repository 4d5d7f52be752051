"""Settings: one flat list, read once, in layers.

Order (later wins): built-in defaults, the TOML config file, environment variables
``CALLCONTROL_<SETTING>`` (upper case), then command-line overrides. The config file
is the one named by ``--config``, else ``$CALLCONTROL_CONFIG``, else
``./callcontrol.toml`` when it exists. Every setting is documented in
``Settings`` below and listed by ``callcontrol config show``; unknown keys are an
error that names the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from callcontrol.errors import ConfigError

ENV_PREFIX = "CALLCONTROL_"
DEFAULT_CONFIG_FILE = Path("callcontrol.toml")
SECRET_SETTINGS = frozenset({"ari_password", "database_url"})


class Settings(BaseModel):
    """Every setting of callcontrol, with its default and meaning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(
        Path("var"),
        description="Where the app keeps its files: the SQLite database, the ARI secret "
        "written by `callcontrol pbx up`, logs of the development PBX.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL. Empty: SQLite at <data_dir>/callcontrol.db. "
        "PostgreSQL: postgresql+asyncpg://user:pass@host/db.",
    )
    ari_url: str = Field("http://127.0.0.1:8088", description="Base URL of Asterisk's HTTP server.")
    ari_username: str = Field("callcontrol", description="ARI user (ari.conf).")
    ari_password: str = Field(
        "",
        description="ARI password. Empty: read from <data_dir>/ari.secret, which "
        "`callcontrol pbx up` generates. Never logged.",
    )
    ari_app: str = Field("callcontrol", description="Stasis application name.")
    ari_timeout: float = Field(5.0, gt=0, le=120, description="Timeout of one ARI request, s.")
    sip_realm: str = Field(
        "callcontrol", description="SIP digest realm; users' password digests are bound to it."
    )
    sip_bind: str = Field("127.0.0.1:5060", description="PJSIP UDP transport address (dev PBX).")
    carrier_ips: str = Field(
        "127.0.0.1",
        description="Comma-separated source addresses/CIDRs that identify the carrier "
        "trunk; calls from there are incoming calls to the organisation's numbers.",
    )
    ring_timeout: int = Field(30, ge=1, le=600, description="Seconds a user's phone rings.")
    provision_interval: float = Field(
        30.0, gt=0, description="Seconds between re-checks of users' SIP endpoints in Asterisk."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO")
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
    pbx_boot_timeout: float = Field(60.0, gt=0, description="Seconds to wait for Asterisk.")
    flows_dir: Path = Field(Path("ivr_flows"), description="Directory of IVR flow files.")
    timezone: str = Field(
        "Europe/London",
        description="The organisation's time zone (IANA name): IVR open hours use it.",
    )
    media_listen: str = Field(
        "127.0.0.1:8099",
        description="Where the app serves prompts (recordings, speech) over HTTP to Asterisk.",
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
    ivr_poll_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between checks of the flow files for edits."
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @property
    def effective_media_url(self) -> str:
        return (self.media_url or f"http://{self.media_listen}").rstrip("/") + "/media"

    @property
    def tts_cache_dir(self) -> Path:
        return self.data_dir / "tts"

    @field_validator("ari_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'callcontrol.db').resolve()}"

    @property
    def ari_secret_file(self) -> Path:
        return self.data_dir / "ari.secret"

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
        return secret

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, for display and logs."""
        out: dict[str, Any] = {}
        for key, raw in self.model_dump().items():
            value = raw
            if key in SECRET_SETTINGS and raw:
                value = _redact_url(raw) if key == "database_url" else "********"
            out[key] = str(value) if isinstance(value, Path) else value
        return out


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
            source[key] = f"{path}"

    known = set(Settings.model_fields)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in known:
            raise ConfigError(f"unknown setting in environment variable {name}")
        values[key] = value
        source[key] = f"environment variable {name}"

    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            source[key] = "command line"

    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "?"
            where = source.get(key.split(".")[0], "")
            if err["type"] == "extra_forbidden":
                msg = f"unknown setting {key!r}"
            else:
                msg = f"setting {key!r}: {err['msg']}"
            problems.append(f"{msg} (from {where})" if where else msg)
        raise ConfigError("; ".join(problems)) from None
