"""Users' SIP endpoints, pushed into Asterisk over ARI dynamic configuration.

The app's database is the source of truth. For each user, three sorcery objects
named by the extension: an ``auth`` carrying only password digests (never the
password), an ``aor`` (one contact, a new registration replaces the old one) and
an ``endpoint`` in the ``from-users`` context, whose ``callerid`` is the number the
user presents: their default assigned number, else the organisation's main number
(``main_number``), else their extension. Calls the app places set their own caller
ID; the endpoint's is what the dialplan's emergency calls present, since they go
to the carrier without the app. ``sync_all`` pushes every user and
removes users' endpoints that are no longer in the database; it runs at start,
after every reconnect (an Asterisk restart forgets memory objects) and every
``provision_interval`` seconds (changes made by the CLI or by another instance).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from callcontrol.ari import AriClient
from callcontrol.domain.directory import User
from callcontrol.errors import AriError, AriHttpError, AriNotFound

log = logging.getLogger(__name__)

CLASS = "res_pjsip"
STATIC_ENDPOINTS = frozenset({"carrier"})


def endpoint_fields(user: User, caller_number: str = "") -> dict[str, dict[str, str]]:
    """The sorcery objects of one user, in the order they must be created;
    ``caller_number`` is the number they present (empty: their extension)."""
    ext = user.extension
    return {
        "auth": {
            "auth_type": "digest",
            "username": ext,
            "realm": user.realm,
            "password_digest": f"MD5:{user.digest_md5}",
        },
        "aor": {
            "max_contacts": "1",
            "remove_existing": "yes",
            "qualify_frequency": "0",
        },
        "endpoint": {
            "auth": ext,
            "aors": ext,
            "context": "from-users",
            "disallow": "all",
            "allow": "ulaw,alaw,gsm",
            "direct_media": "no",
            "rtp_symmetric": "yes",
            "force_rport": "yes",
            "rewrite_contact": "yes",
            "dtmf_mode": "rfc4733",
            "identify_by": "username",
            "rtp_timeout": "300",  # a phone that vanished mid-call does not hold it forever
            "callerid": f'"{user.name}" <{caller_number or ext}>',
        },
    }


class EndpointProvisioner:
    """``main_number``: presented by users who have no number assigned ("": none)."""

    def __init__(self, ari: AriClient, main_number: str = "") -> None:
        self.ari = ari
        self.main_number = main_number

    async def push(self, user: User, number: str | None = None) -> None:
        """Create or update the user's objects; ``number``: their default assigned one."""
        fields_of = endpoint_fields(user, number or self.main_number)
        for object_type, fields in fields_of.items():
            try:
                await self.ari.put_dynamic_config(CLASS, object_type, user.extension, fields)
            except AriHttpError as exc:
                # Asterisk re-applies the stored object's fields on an update; an object it
                # cannot round-trip (e.g. written by an older version) is replaced whole.
                log.warning(
                    "replacing %s %s after a failed update: %s", object_type, user.extension, exc
                )
                await self.ari.delete_dynamic_config(CLASS, object_type, user.extension)
                await self.ari.put_dynamic_config(CLASS, object_type, user.extension, fields)

    async def remove(self, extension: str) -> None:
        for object_type in ("endpoint", "aor", "auth"):
            await self.ari.delete_dynamic_config(CLASS, object_type, extension)

    async def sync_all(self, users: list[User], numbers: Mapping[str, str]) -> None:
        """Push every user (``numbers``: user name -> the number they present) and
        remove the endpoints of users who are gone."""
        wanted = {user.extension for user in users}
        for user in users:
            await self.push(user, numbers.get(user.name))
        try:
            endpoints = await self.ari.request("GET", "/endpoints/PJSIP")
        except AriNotFound:
            endpoints = []
        stale = [
            e["resource"]
            for e in endpoints or []
            if e.get("resource") not in wanted
            and e.get("resource") not in STATIC_ENDPOINTS
            and str(e.get("resource", "")).isdigit()
        ]
        for extension in stale:
            try:
                await self.remove(extension)
                log.info("removed the endpoint of extension %s (no such user)", extension)
            except AriError as exc:
                log.warning("could not remove endpoint %s: %s", extension, exc)
        log.info("provisioned %d users' SIP endpoints", len(users))
