"""What `serve` checks before it takes calls: what it exposes, and with which secrets.

Listeners bind loopback unless a setting says otherwise (config.py); here the process
says so when one does not, builds the console's HTTPS context (a bad certificate is an
error at start, not at the first browser), and refuses to serve users whose SIP password
is one that callcontrol once published (the demo's, in the README before the demo
passwords were generated) while SIP is reachable from the network.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from urllib.parse import urlsplit

from callcontrol.config import Settings, is_loopback
from callcontrol.domain.directory import User
from callcontrol.domain.users import sip_digests
from callcontrol.errors import ConfigError
from callcontrol.tls import server_context

__all__ = [
    "PUBLISHED_SIP_PASSWORDS",
    "console_tls",
    "published_password_users",
    "refuse_published_passwords",
    "sip_reachable",
    "warn_exposed",
]

log = logging.getLogger(__name__)

#: SIP passwords callcontrol published (the demo users', in the README and `./dev run`
#: until they were generated per installation): a scanner's first guesses.
PUBLISHED_SIP_PASSWORDS = ("wonderland-7291", "builder-5813-x")


def console_tls(settings: Settings) -> ssl.SSLContext | None:
    """The console's HTTPS context when console_tls_cert/key are set, else None."""
    if settings.console_tls_cert is None or settings.console_tls_key is None:
        return None
    return server_context(
        settings.console_tls_cert,
        settings.console_tls_key,
        "the console's certificate (settings console_tls_cert, console_tls_key)",
    )


def warn_exposed(settings: Settings) -> None:
    """Say so when a listener leaves loopback: always the operator's explicit setting, but
    a console reachable from the network without TLS carries passwords in clear."""
    if not is_loopback(settings.console_listen):
        if settings.console_tls_cert is None:
            log.warning(
                "the console listens on %s without TLS: sign-ins and API tokens cross the "
                "network in clear (set console_tls_cert/console_tls_key, or put a TLS proxy "
                "in front and listen on 127.0.0.1)",
                settings.console_listen,
            )
        else:
            log.info("the console listens on %s (HTTPS)", settings.console_listen)
    if not is_loopback(settings.media_listen):
        log.info(
            "prompts and payment webhooks are served on %s (not loopback)", settings.media_listen
        )


def sip_reachable(settings: Settings) -> bool:
    """Whether phones elsewhere can reach the PBX's SIP: a transport bound beyond loopback,
    or an Asterisk on another host (ari_url), whose binds these settings do not show."""
    binds = [settings.sip_bind] + ([settings.sip_tls_bind] if settings.sip_tls else [])
    ari_host = urlsplit(settings.ari_url).hostname or ""
    return not all(is_loopback(bind) for bind in binds) or not is_loopback(ari_host)


def published_password_users(users: Iterable[User]) -> list[str]:
    """The users whose SIP password is one of PUBLISHED_SIP_PASSWORDS (by their digest)."""
    return [
        user.name
        for user in users
        if any(
            sip_digests(user.extension, user.realm, password).sha256 == user.digest_sha256
            for password in PUBLISHED_SIP_PASSWORDS
        )
    ]


def refuse_published_passwords(settings: Settings, users: Iterable[User]) -> None:
    """ConfigError when SIP is reachable from the network and a user still has a published
    password; a warning when it is not (a development PBX on loopback)."""
    names = published_password_users(users)
    if not names:
        return
    fix = "; ".join(f"callcontrol users set-password {name} --password -" for name in names)
    if sip_reachable(settings):
        raise ConfigError(
            f"refusing to serve: user(s) {', '.join(names)} still have the demo password "
            f"published in callcontrol's README, and SIP is reachable from the network; "
            f"set new ones: {fix}"
        )
    log.warning(
        "user(s) %s still have the published demo password (harmless on loopback only; "
        "change before exposing SIP: %s)",
        ", ".join(names),
        fix,
    )
