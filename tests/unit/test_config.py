"""Layered settings: defaults < TOML file < CALLCONTROL_<SETTING> < command-line overrides.

Every test passes ``environ=`` and ``config_file=`` explicitly and runs in an empty
working directory, so neither the real environment nor a ./callcontrol.toml counts.
"""

from __future__ import annotations

import re
import string
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcontrol.config import Settings, load_settings
from callcontrol.errors import CallControlError, ConfigError

SECRET = "test-secret-xyz"


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---- layers ---------------------------------------------------------------------------


def test_defaults_with_no_file_and_no_environment() -> None:
    s = load_settings(config_file=None, environ={})
    assert s.data_dir == Path("var")
    assert s.database_url == ""
    assert s.ari_url == "http://127.0.0.1:8088"
    assert s.ari_username == "callcontrol"
    assert s.ari_password == ""
    assert s.ring_timeout == 30
    assert s.log_level == "INFO"
    assert s.pbx_mode == "auto"
    for name, field in Settings.model_fields.items():
        assert getattr(s, name) == field.default, name


def test_every_setting_is_documented() -> None:
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undocumented == []


def test_toml_file_sets_values(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path / "cc.toml",
        'data_dir = "/srv/cc"\nring_timeout = 12\nari_timeout = 2.5\n'
        'log_level = "DEBUG"\nari_url = "https://pbx.example:8089/"\n',
    )
    s = load_settings(config_file=path, environ={})
    assert s.data_dir == Path("/srv/cc")
    assert s.ring_timeout == 12
    assert s.ari_timeout == 2.5
    assert s.log_level == "DEBUG"
    assert s.ari_url == "https://pbx.example:8089"  # trailing slash removed
    assert s.sip_realm == "callcontrol"  # untouched settings keep their defaults


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "cc.toml", 'ring_timeout = 12\nsip_realm = "from-file"\n')
    env = {"CALLCONTROL_RING_TIMEOUT": "20", "PATH": "/usr/bin", "RING_TIMEOUT": "99"}
    s = load_settings(config_file=path, environ=env)
    assert s.ring_timeout == 20
    assert s.sip_realm == "from-file"


def test_overrides_beat_environment_and_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "cc.toml", 'ring_timeout = 12\nari_app = "file-app"\n')
    env = {"CALLCONTROL_RING_TIMEOUT": "20", "CALLCONTROL_ARI_APP": "env-app"}
    s = load_settings(
        config_file=path, environ=env, overrides={"ring_timeout": "25", "ari_app": None}
    )
    assert s.ring_timeout == 25
    assert s.ari_app == "env-app"  # an override of None means "not given"


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "elsewhere.toml", "ring_timeout = 7\n")
    s = load_settings(config_file=None, environ={"CALLCONTROL_CONFIG": str(path)})
    assert s.ring_timeout == 7


def test_explicit_config_file_beats_the_environment_one(tmp_path: Path) -> None:
    chosen = write_toml(tmp_path / "chosen.toml", "ring_timeout = 7\n")
    other = write_toml(tmp_path / "other.toml", "ring_timeout = 8\n")
    s = load_settings(config_file=chosen, environ={"CALLCONTROL_CONFIG": str(other)})
    assert s.ring_timeout == 7


def test_callcontrol_toml_in_working_directory_is_the_default(tmp_path: Path) -> None:
    write_toml(tmp_path / "callcontrol.toml", "ring_timeout = 9\n")
    assert load_settings(config_file=None, environ={}).ring_timeout == 9


def test_settings_are_frozen() -> None:
    s = load_settings(config_file=None, environ={})
    with pytest.raises(ValueError, match="frozen"):
        s.ring_timeout = 5  # type: ignore[misc]


# ---- errors -------------------------------------------------------------------------


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "cc.toml", "ring_timout = 3\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=path, environ={})
    message = str(info.value)
    assert "unknown setting 'ring_timout'" in message
    assert str(path) in message


def test_unknown_table_in_file_is_an_unknown_setting(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "cc.toml", '[ari]\nurl = "http://x"\n')
    with pytest.raises(ConfigError, match=r"unknown setting 'ari'"):
        load_settings(config_file=path, environ={})


def test_unknown_key_in_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=None, environ={"CALLCONTROL_RING_TIMOUT": "3"})
    message = str(info.value)
    assert "unknown setting" in message
    assert "environment variable CALLCONTROL_RING_TIMOUT" in message


def test_unknown_key_in_overrides_names_the_command_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=None, environ={}, overrides={"ring_timout": "3"})
    message = str(info.value)
    assert "unknown setting 'ring_timout'" in message
    assert "command line" in message


@pytest.mark.parametrize(
    ("layer", "where"),
    [("file", "cc.toml"), ("env", "CALLCONTROL_RING_TIMEOUT"), ("override", "command line")],
)
@pytest.mark.parametrize("value", ["abc", "0", "601"])
def test_bad_ring_timeout_names_setting_and_source(
    tmp_path: Path, layer: str, where: str, value: str
) -> None:
    path = None
    env: dict[str, str] = {}
    overrides: dict[str, Any] = {}
    if layer == "file":
        toml_value = value if value.isdigit() else f'"{value}"'
        path = write_toml(tmp_path / "cc.toml", f"ring_timeout = {toml_value}\n")
    elif layer == "env":
        env["CALLCONTROL_RING_TIMEOUT"] = value
    else:
        overrides["ring_timeout"] = value
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=path, environ=env, overrides=overrides)
    message = str(info.value)
    assert "setting 'ring_timeout'" in message
    assert where in message


def test_wrong_type_message_says_what_is_expected() -> None:
    with pytest.raises(ConfigError, match=r"ring_timeout.*integer"):
        load_settings(config_file=None, environ={}, overrides={"ring_timeout": "abc"})


def test_out_of_range_message_says_the_bound() -> None:
    with pytest.raises(ConfigError, match=r"ring_timeout.*greater than or equal to 1"):
        load_settings(config_file=None, environ={}, overrides={"ring_timeout": 0})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ari_url", "ftp://pbx"),
        ("ari_url", "127.0.0.1:8088"),
        ("log_level", "TRACE"),
        ("pbx_mode", "docker"),
        ("ari_timeout", "0"),
        ("provision_interval", "-1"),
        ("stripe_publishable_key", "sk_test_secret"),
    ],
)
def test_invalid_values_name_the_setting(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"setting '{key}'"):
        load_settings(config_file=None, environ={f"CALLCONTROL_{key.upper()}": value})


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            config_file=None, environ={}, overrides={"ring_timeout": "abc", "log_level": "X"}
        )
    assert "ring_timeout" in str(info.value)
    assert "log_level" in str(info.value)


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "broken.toml", "ring_timeout = = 3\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config_file=path, environ={})
    assert str(path) in str(info.value)
    assert "line 1" in str(info.value)
    assert isinstance(info.value.__cause__, tomllib.TOMLDecodeError)


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_settings(config_file=path, environ={})
    assert str(path) in str(info.value)


def test_missing_config_file_named_by_environment(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=None, environ={"CALLCONTROL_CONFIG": str(path)})


def test_config_file_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
        load_settings(config_file=tmp_path, environ={})


def test_config_file_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('flows_dir = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=re.escape("latin1.toml")):
        load_settings(config_file=path, environ={})


def test_config_error_is_a_callcontrol_error() -> None:
    assert issubclass(ConfigError, CallControlError)


# ---- redaction -------------------------------------------------------------------------


def test_redacted_masks_the_ari_password() -> None:
    s = load_settings(config_file=None, environ={"CALLCONTROL_ARI_PASSWORD": SECRET})
    shown = s.redacted()
    assert shown["ari_password"] == "********"
    assert SECRET not in repr(shown)
    assert set(shown) == set(Settings.model_fields)


def test_redacted_shows_an_empty_password_as_empty() -> None:
    assert load_settings(config_file=None, environ={}).redacted()["ari_password"] == ""


def test_redacted_paths_are_strings() -> None:
    shown = load_settings(config_file=None, environ={}).redacted()
    assert shown["data_dir"] == "var"
    assert all(not isinstance(v, Path) for v in shown.values())


def test_redacted_masks_the_password_in_a_postgresql_url() -> None:
    url = f"postgresql+asyncpg://cc:{SECRET}@db.example:5432/callcontrol"
    s = load_settings(config_file=None, environ={}, overrides={"database_url": url})
    shown = s.redacted()["database_url"]
    assert SECRET not in shown
    assert shown == "postgresql+asyncpg://cc:********@db.example:5432/callcontrol"


def test_redacted_keeps_a_url_without_credentials() -> None:
    url = "sqlite+aiosqlite:////srv/cc/callcontrol.db"
    s = load_settings(config_file=None, environ={}, overrides={"database_url": url})
    assert s.redacted()["database_url"] == url


_PASSWORD_CHARS = string.ascii_letters + string.digits + "-_.~!$&'()*+,;=:%"


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=st.text(alphabet=_PASSWORD_CHARS, min_size=1, max_size=40))
def test_redacted_never_shows_a_url_password(password: str) -> None:
    secret = "Zq9-redacted" + password  # distinct from the rest of the URL; 12+ characters
    url = f"postgresql+asyncpg://cc:{secret}@db.example/callcontrol"
    ari_password = secret.replace(";", ":")  # no ';' in an ARI password (ari.conf comment)
    s = load_settings(
        config_file=None, environ={}, overrides={"database_url": url, "ari_password": ari_password}
    )
    assert secret not in repr(s.redacted())
    assert ari_password not in repr(s.redacted())


def test_redacted_masks_a_password_in_the_query_string() -> None:
    url = f"postgresql+asyncpg:///callcontrol?user=cc&password={SECRET}&host=/run/postgresql"
    s = load_settings(config_file=None, environ={}, overrides={"database_url": url})
    assert SECRET not in s.redacted()["database_url"]


# ---- derived values --------------------------------------------------------------------


def test_effective_database_url_defaults_to_sqlite_under_data_dir(tmp_path: Path) -> None:
    s = load_settings(config_file=None, environ={"CALLCONTROL_DATA_DIR": str(tmp_path / "d")})
    assert s.effective_database_url == f"sqlite+aiosqlite:///{tmp_path / 'd' / 'callcontrol.db'}"


def test_effective_database_url_is_absolute_for_a_relative_data_dir(tmp_path: Path) -> None:
    s = load_settings(config_file=None, environ={})
    expected = (tmp_path / "var" / "callcontrol.db").resolve()
    assert s.effective_database_url == f"sqlite+aiosqlite:///{expected}"


def test_effective_database_url_uses_the_setting_when_given() -> None:
    url = "postgresql+asyncpg://cc:pw@db/cc"
    s = load_settings(config_file=None, environ={"CALLCONTROL_DATABASE_URL": url})
    assert s.effective_database_url == url


def test_effective_ari_password_prefers_the_setting(tmp_path: Path) -> None:
    (tmp_path / "ari.secret").write_text("from-file\n")
    s = load_settings(
        config_file=None,
        environ={"CALLCONTROL_DATA_DIR": str(tmp_path), "CALLCONTROL_ARI_PASSWORD": SECRET},
    )
    assert s.effective_ari_password == SECRET


def test_effective_ari_password_reads_the_secret_file(tmp_path: Path) -> None:
    (tmp_path / "ari.secret").write_text("  generated-secret-123\n")
    s = load_settings(config_file=None, environ={"CALLCONTROL_DATA_DIR": str(tmp_path)})
    assert s.ari_secret_file == tmp_path / "ari.secret"
    assert s.effective_ari_password == "generated-secret-123"


def test_effective_ari_password_absent_is_a_clear_config_error(tmp_path: Path) -> None:
    s = load_settings(config_file=None, environ={"CALLCONTROL_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError) as info:
        _ = s.effective_ari_password
    message = str(info.value)
    assert "CALLCONTROL_ARI_PASSWORD" in message
    assert "callcontrol pbx up" in message
    assert str(tmp_path / "ari.secret") in message
