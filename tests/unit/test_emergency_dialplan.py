"""The emergency numbers the dialplan sends straight to the carrier, per country."""

from __future__ import annotations

import pytest

from callcontrol.domain.emergency import emergency_codes, is_emergency
from callcontrol.errors import PbxError
from callcontrol.pbx.devpbx import emergency_conf


@pytest.mark.parametrize(
    ("country", "codes"),
    [
        ("GB", ["112", "911", "999"]),
        ("AU", ["112", "911", "000"]),
        ("DE", ["112", "911", "110"]),
        ("FR", ["112", "911", "15", "17", "18", "114"]),
    ],
)
def test_each_country_gets_every_phones_codes_and_its_own(country: str, codes: list[str]) -> None:
    assert [c.digits for c in emergency_codes(country)] == codes
    assert all(is_emergency(code, country) for code in codes)


def test_service_codes_are_not_sent_to_the_carrier_as_emergencies() -> None:
    assert "101" not in [c.digits for c in emergency_codes("GB")]  # police non-emergency
    assert "999" not in [c.digits for c in emergency_codes("US")]


def test_the_generated_include_dials_each_code_to_the_carrier() -> None:
    conf = emergency_conf("GB")
    for code in ("112", "911", "999"):
        assert f"exten => {code},1,NoOp(" in conf
    assert conf.count(" same => n,Dial(PJSIP/${EXTEN}@carrier)") == 3
    assert "Stasis" not in conf and ";" not in conf.split("\n", 2)[2]


def test_a_country_that_is_not_two_letters_is_refused() -> None:
    with pytest.raises(PbxError, match="country"):
        emergency_conf("G;B")


def test_a_users_endpoint_presents_their_number_else_the_main_number() -> None:
    from callcontrol.calls.provisioning import endpoint_fields
    from callcontrol.domain.directory import User

    alice = User(1, "alice", "1001", "0" * 32, "0" * 64, "callcontrol")
    assert endpoint_fields(alice, "+442079460150")["endpoint"]["callerid"] == (
        '"alice" <+442079460150>'
    )
    assert endpoint_fields(alice)["endpoint"]["callerid"] == '"alice" <1001>'
