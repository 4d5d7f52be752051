"""Settings' values are checked when read: bad input is one clear line, never a traceback.

Settings that reach Asterisk (generated .conf files, ARI requests, SIP headers) must not
be able to carry configuration of their own: a line break, a ';' comment, a '[section]'.
Every test passes ``environ=`` and ``config_file=`` explicitly and runs in an empty
working directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from callcontrol.agi.server import CHANNEL_VARIABLES as AGI_CHANNEL_VARIABLES
from callcontrol.config import Settings, load_settings
from callcontrol.errors import ConfigError

INJECTION = "\n[evil]\ntype = endpoint\ncontext = default"


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def error_of(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=None, environ={}, overrides=overrides)
    message = str(info.value)
    assert "\n" not in message  # one line
    return message


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string (escapes, so line breaks survive)."""
    return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'


# ---- nothing injects configuration into Asterisk ---------------------------------------------

# Every setting that reaches Asterisk, a valid value, and values that would smuggle
# configuration in: a new section, a comment that cuts the line, a section name's bracket.
REACHES_ASTERISK = {
    "sip_bind": "127.0.0.1:5060",
    "carrier_ips": "127.0.0.1",
    "ari_username": "callcontrol",
    "ari_password": "s3cret-Pa55-xyz",
    "ari_bind": "127.0.0.1:8088",
    "sip_permit": "127.0.0.0/8",
    "sip_tls_bind": "127.0.0.1:5061",
    "ari_app": "callcontrol",
    "sip_realm": "callcontrol",
    "ari_url": "http://127.0.0.1:8088",
    "media_listen": "127.0.0.1:8099",
    "media_url": "http://127.0.0.1:8099",
    "ami_bind": "127.0.0.1:5038",
    "ami_address": "127.0.0.1:5038",
    "ami_username": "callcontrol",
    "ami_password": "s3cret-Pa55-ami",
    "ami_permit": "127.0.0.1/32",
}
ATTACKS = [INJECTION, "\r[evil]", ";comment", " ; comment", "]\n[evil", "\x00"]
# A comma would add a media URI to an ARI playback, a quote would end the realm in a SIP
# header; the ARI and AMI passwords may contain both (they only reach their own .conf
# file, HTTP and the AMI Login action).
NOT_IN_NAMES = [",sound:evil", '"']
CASES = [(key, attack) for key in sorted(REACHES_ASTERISK) for attack in ATTACKS] + [
    (key, attack)
    for key in sorted(REACHES_ASTERISK)
    if key not in ("ari_password", "ami_password")
    for attack in NOT_IN_NAMES
]


@pytest.mark.parametrize(("key", "attack"), CASES, ids=repr)
def test_a_setting_that_reaches_asterisk_cannot_carry_configuration(key: str, attack: str) -> None:
    valid = REACHES_ASTERISK[key]
    assert getattr(load_settings(environ={}, overrides={key: valid}), key) == valid
    message = error_of(**{key: valid + attack})
    assert f"setting {key!r}" in message
    assert "--set" in message


@pytest.mark.parametrize("key", sorted(REACHES_ASTERISK))
@pytest.mark.parametrize("layer", ["file", "env"])
def test_injection_is_refused_from_every_layer(tmp_path: Path, key: str, layer: str) -> None:
    value = REACHES_ASTERISK[key] + INJECTION
    path = None
    env: dict[str, str] = {}
    if layer == "file":
        path = tmp_path / "cc.toml"
        path.write_text(f"{key} = {toml_string(value)}\n")
        where = f"config file {path}"
    else:
        env[f"CALLCONTROL_{key.upper()}"] = value
        where = f"environment variable CALLCONTROL_{key.upper()}"
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=path, environ=env)
    message = str(info.value)
    assert f"setting {key!r}" in message
    assert where in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("key", "value"),
    [(k, v) for k, v in Settings.model_fields.items() if isinstance(v.default, (str, Path))],
)
def test_no_text_setting_accepts_a_control_character(key: str, value: Any) -> None:
    message = error_of(**{key: f"{value.default}\nx"})
    assert f"setting {key!r}" in message
    assert "line break" in message


@pytest.mark.parametrize("key", ["ari_password", "ami_password"])
def test_the_ari_and_ami_passwords_are_never_echoed(key: str) -> None:
    secret = "Zq9-very-secret"
    for bad in (f"{secret};x", f"{secret} x", f"{secret}{INJECTION}", f"{secret}é"):
        assert secret not in error_of(**{key: bad})


def test_a_database_url_is_never_echoed() -> None:
    message = error_of(database_url="postgresql+asyncpg://cc:Zq9-very-secret\n@db/cc")
    assert "setting 'database_url'" in message
    assert "Zq9" not in message


# ---- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "not an address",
        "127.0.0.1",
        "127.0.0.1:",
        ":5060",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:50a",
        "127.0.0.1:\uff15\uff10\uff16\uff10",  # full-width digits
        "pbx.example:5060",
        "[::1]:5060",
        "127.0.0.256:5060",
    ],
)
def test_sip_bind_must_be_an_ipv4_address_and_port(value: str) -> None:
    message = error_of(sip_bind=value)
    assert "setting 'sip_bind'" in message
    assert "IPv4 address and a port" in message
    assert repr(value) in message


def test_sip_bind_accepts_any_address_of_this_host() -> None:
    assert load_settings(environ={}, overrides={"sip_bind": "0.0.0.0:5070"}).sip_bind == (
        "0.0.0.0:5070"
    )


@pytest.mark.parametrize("value", ["localhost:8099", "0.0.0.0:8099", "media.example.org:80"])
def test_media_listen_accepts_a_host_and_port(value: str) -> None:
    assert load_settings(environ={}, overrides={"media_listen": value}).media_listen == value


@pytest.mark.parametrize("value", ["8099", ":8099", "localhost:http", "-bad-:8099", "a b:1"])
def test_media_listen_must_be_a_host_and_port(value: str) -> None:
    assert "setting 'media_listen'" in error_of(media_listen=value)


def test_carrier_ips_are_addresses_and_networks_normalised() -> None:
    s = load_settings(
        environ={}, overrides={"carrier_ips": " 203.0.113.10, 198.51.100.0/24,,2001:db8::/32 "}
    )
    assert s.carrier_ips == "203.0.113.10,198.51.100.0/24,2001:db8::/32"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("127.0.0.1,carrier.example", "'carrier.example'"),
        ("10.0.0.0/33", "'10.0.0.0/33'"),
        ("1.2.3", "'1.2.3'"),
        ("127.0.0.1 10.0.0.1", "'127.0.0.1 10.0.0.1'"),
    ],
)
def test_carrier_ips_names_the_bad_entry(value: str, named: str) -> None:
    message = error_of(carrier_ips=value)
    assert "setting 'carrier_ips'" in message
    assert named in message
    assert "IP address or network" in message


@pytest.mark.parametrize("value", ["", " ", " , "])
def test_carrier_ips_needs_at_least_one_address(value: str) -> None:
    assert "at least one" in error_of(carrier_ips=value)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("ari_url", "ftp://x", "http:// or https://"),
        ("ari_url", "http://", "no host"),
        ("ari_url", "http://pbx:99999", "port"),
        ("ari_url", "http://pbx:port", "port"),
        ("ari_url", "http://user:pw@pbx", "user name or password"),
        ("ari_url", "http://pbx/?x=1", "query"),
        ("ari_url", "http://pbx/#x", "query"),
        ("media_url", "ftp://x", "http:// or https://"),
        ("media_url", "http://media host", "white space"),
    ],
)
def test_urls_are_http_with_a_host(key: str, value: str, problem: str) -> None:
    message = error_of(**{key: value})
    assert f"setting {key!r}" in message
    assert problem in message


def test_urls_keep_a_path_and_lose_the_trailing_slash() -> None:
    s = load_settings(
        environ={},
        overrides={"ari_url": "https://pbx.example:8089/asterisk/", "media_url": "http://m/x/"},
    )
    assert s.ari_url == "https://pbx.example:8089/asterisk"
    assert s.effective_media_url == "http://m/x/media"


# ---- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["ari_username", "ari_app", "sip_realm"])
@pytest.mark.parametrize("value", ["", " ", "a b", "a:b", "-lead", "a/b", "x" * 200])
def test_names_are_plain(key: str, value: str) -> None:
    assert f"setting {key!r}" in error_of(**{key: value})


def test_realm_may_be_a_domain() -> None:
    s = load_settings(environ={}, overrides={"sip_realm": "pbx.example.com"})
    assert s.sip_realm == "pbx.example.com"


@pytest.mark.parametrize("value", ["abc;", "a b", "pässword", "\tx"])
def test_ari_password_is_printable_ascii_without_space_or_semicolon(value: str) -> None:
    assert "setting 'ari_password'" in error_of(ari_password=value)


def test_an_empty_ari_password_means_the_generated_secret() -> None:
    assert load_settings(environ={}, overrides={"ari_password": ""}).ari_password == ""


# ---- paths ---------------------------------------------------------------------------------

PATHS = [k for k, v in Settings.model_fields.items() if v.annotation is Path]


@pytest.mark.parametrize("key", PATHS)
@pytest.mark.parametrize("value", ["", "  "])
def test_a_path_setting_cannot_be_empty(tmp_path: Path, key: str, value: str) -> None:
    env = {f"CALLCONTROL_{key.upper()}": value}
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=None, environ=env)
    message = str(info.value)
    assert f"setting {key!r}" in message
    assert "must not be empty" in message


def test_every_path_setting_is_checked() -> None:
    assert sorted(PATHS) == ["data_dir", "flows_dir", "pbx_dialplan_dir", "pbx_root"]


def test_the_current_directory_is_written_as_a_dot() -> None:
    assert load_settings(environ={}, overrides={"data_dir": "."}).data_dir == Path(".")


# ---- numbers -----------------------------------------------------------------------------

NUMBERS = [k for k, v in Settings.model_fields.items() if v.annotation in (int, float)]
FLOATS = [k for k, v in Settings.model_fields.items() if v.annotation is float]


@pytest.mark.parametrize("key", NUMBERS)
@pytest.mark.parametrize("value", ["true", "false"])
def test_a_boolean_is_not_a_number(tmp_path: Path, key: str, value: str) -> None:
    path = tmp_path / "cc.toml"
    path.write_text(f"{key} = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=path, environ={})
    message = str(info.value)
    assert f"setting {key!r}" in message
    assert f"not true or false, got {value} (from config file {path})" in message


@pytest.mark.parametrize("key", FLOATS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_float_setting_must_be_finite(tmp_path: Path, key: str, value: str) -> None:
    path = tmp_path / "cc.toml"
    path.write_text(f"{key} = {value}\n")
    for source in (
        {"config_file": path, "environ": {}},
        {"config_file": None, "environ": {f"CALLCONTROL_{key.upper()}": value}},
    ):
        with pytest.raises(ConfigError) as info:
            load_settings(**source)
        message = str(info.value)
        assert f"setting {key!r}" in message
        assert "finite number" in message
        assert "less than" not in message
        assert "greater than" not in message


@pytest.mark.parametrize("key", FLOATS)
def test_every_float_setting_has_an_upper_bound(key: str) -> None:
    assert f"setting {key!r}" in error_of(**{key: "1e300"})


def test_the_numbers_are_the_ones_checked() -> None:
    assert set(FLOATS) <= set(NUMBERS)
    assert "ring_timeout" in NUMBERS
    assert "ari_timeout" in FLOATS


# ---- messages ----------------------------------------------------------------------------


def test_an_echoed_value_is_cut() -> None:
    message = error_of(sip_bind="x" * 5000)
    assert "... (5000 characters)" in message
    assert len(message) < 300


def test_an_unknown_long_key_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text(f"{'k' * 3000} = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=path, environ={})
    assert "... (3000 characters)" in str(info.value)
    assert len(str(info.value)) < 300


def test_an_unknown_long_environment_variable_is_cut() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=None, environ={"CALLCONTROL_" + "K" * 3000: "1"})
    assert "characters)" in str(info.value)
    assert len(str(info.value)) < 400


def test_a_long_time_zone_is_cut() -> None:
    message = error_of(timezone="Europe/" + "x" * 500)
    assert "(507 characters)" in message
    assert len(message) < 300


def test_a_message_says_what_was_given() -> None:
    message = error_of(ring_timeout="0")
    assert message == (
        "setting 'ring_timeout': Input should be greater than or equal to 1, got '0' "
        "(from --set on the command line)"
    )


def test_a_validator_message_has_no_library_prefix() -> None:
    assert "Value error" not in error_of(ari_url="ftp://x")


def test_unknown_environment_variables_are_reported_with_the_other_problems() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            config_file=None,
            environ={"CALLCONTROL_TEST_PG_URL": "postgresql://x", "CALLCONTROL_RING_TIMEOUT": "0"},
        )
    message = str(info.value)
    assert "unknown setting 'test_pg_url' (from environment variable CALLCONTROL_TEST_PG_URL" in (
        message
    )
    assert "every CALLCONTROL_* variable is a setting" in message
    assert "setting 'ring_timeout'" in message


# ---- the project's own environment variables --------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def _channel_variables() -> set[str]:
    text = (REPO / "dialplan" / "ari.conf").read_text()
    line = re.search(r"^channelvars\s*=\s*(.+)$", text, re.M)
    assert line is not None
    return {name.strip() for name in line.group(1).split(",")}


def test_every_callcontrol_variable_the_project_names_is_a_setting() -> None:
    """A test or a doc must not ask for a CALLCONTROL_* variable: every command refuses it."""
    allowed = {f"CALLCONTROL_{k.upper()}" for k in Settings.model_fields} | {"CALLCONTROL_CONFIG"}
    allowed |= _channel_variables()
    allowed |= set(AGI_CHANNEL_VARIABLES)  # what `callcontrol agi` sets for the dialplan
    named: dict[str, str] = {}
    for name in re.findall(r"`\$?(CALLCONTROL_[A-Z0-9_]+)`", (REPO / "README.md").read_text()):
        named[name] = "README.md"
    read = re.compile(r"""(?:environ\.get|environ\[|getenv)\(?\s*["'](CALLCONTROL_[A-Z0-9_]+)""")
    for tree in ("callcontrol", "tests", "bench"):
        for path in (REPO / tree).rglob("*.py"):
            for name in read.findall(path.read_text()):
                named[name] = str(path.relative_to(REPO))
    assert named  # the scan finds the settings the docs name
    assert {name: where for name, where in named.items() if name not in allowed} == {}
