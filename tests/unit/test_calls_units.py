"""Pure parts of the call code: dialled-number normalisation, endpoint fields, prompts."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcontrol.calls import prompts
from callcontrol.calls.callee import normalise_dialled
from callcontrol.calls.provisioning import endpoint_fields
from callcontrol.domain.directory import User
from callcontrol.domain.users import sip_digests
from callcontrol.logs import CallIdFilter, call_id_var
from callcontrol.pbx.sipp import render


@pytest.mark.parametrize(
    ("dialled", "e164"),
    [
        ("+442079460000", "+442079460000"),
        ("442079460000", "+442079460000"),
        ("00442079460000", "+442079460000"),
        (" +15551234567 ", "+15551234567"),
    ],
)
def test_the_carrier_may_send_the_number_with_or_without_plus(dialled: str, e164: str) -> None:
    assert normalise_dialled(dialled) == e164


@given(st.from_regex(r"[1-9][0-9]{6,14}", fullmatch=True))
def test_normalised_numbers_always_start_with_one_plus(digits: str) -> None:
    for form in (digits, "+" + digits, "00" + digits):
        assert normalise_dialled(form) == "+" + digits


def _user() -> User:
    digests = sip_digests("1001", "callcontrol", "wonderland-7291")
    return User(1, "alice", "1001", digests.md5, digests.sha256, "callcontrol")


def test_endpoint_fields_carry_a_digest_and_never_the_password() -> None:
    fields = endpoint_fields(_user())
    assert list(fields) == ["auth", "aor", "endpoint"]  # the order Asterisk needs
    auth = fields["auth"]
    assert auth["username"] == "1001"
    assert (
        auth["password_digest"]
        == "MD5:" + sip_digests("1001", "callcontrol", "wonderland-7291").md5
    )
    assert "password" not in auth
    flat = repr(fields)
    assert "wonderland-7291" not in flat
    endpoint = fields["endpoint"]
    assert endpoint["context"] == "from-users"
    assert endpoint["auth"] == endpoint["aors"] == "1001"
    assert fields["aor"]["max_contacts"] == "1"


def test_every_refusal_is_a_sound_and_a_known_hangup_reason() -> None:
    reasons = {"normal", "busy", "congestion", "no_answer", "unallocated", "rejected"}
    for refusal in (
        prompts.NOT_IN_SERVICE,
        prompts.NO_ANSWER,
        prompts.UNAVAILABLE,
        prompts.BUSY,
        prompts.SERVICE_UNAVAILABLE,
        prompts.CANNOT_COMPLETE,
    ):
        assert refusal.reason in reasons
        assert refusal.uris and all(uri.startswith("sound:") for uri in refusal.uris)


def test_log_records_carry_the_call_id_of_the_current_call() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    token = call_id_var.set("abc123")
    try:
        assert CallIdFilter().filter(record)
    finally:
        call_id_var.reset(token)
    assert record.call_id == "abc123"  # type: ignore[attr-defined]
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    CallIdFilter().filter(outside)
    assert outside.call_id == "-"  # type: ignore[attr-defined]


def test_a_scenario_with_a_missing_value_is_refused() -> None:
    with pytest.raises(ValueError, match="ring_ms"):
        render("phone_answer.xml", after_ack="")
    xml = render("phone_answer.xml", ring_ms=10, after_ack="<!-- -->")
    assert "{{" not in xml and 'milliseconds="10"' in xml
