"""The setting workers: several processes share one PBX's calls, each its own Stasis
application and call-record node; with one worker nothing changes."""

from __future__ import annotations

import re

import pytest

from callcontrol.cli import build_parser
from callcontrol.cli.calls import _NODE
from callcontrol.config import load_settings
from callcontrol.errors import ConfigError


def test_one_worker_keeps_the_app_and_node_names_as_they_were() -> None:
    settings = load_settings(config_file=None, environ={"CALLCONTROL_PBX_NODE": "pbx-a"})
    assert settings.workers == 1
    assert settings.worker_app(1) == "callcontrol"
    assert settings.worker_node(1) == "pbx-a"


def test_each_of_several_workers_has_its_own_app_and_node() -> None:
    settings = load_settings(
        config_file=None,
        environ={"CALLCONTROL_WORKERS": "3", "CALLCONTROL_PBX_NODE": "pbx-a"},
    )
    assert [settings.worker_app(k) for k in (1, 2, 3)] == [
        "callcontrol-1",
        "callcontrol-2",
        "callcontrol-3",
    ]
    assert [settings.worker_node(k) for k in (1, 2, 3)] == ["pbx-a/1", "pbx-a/2", "pbx-a/3"]
    # a worker's node can never be a PBX's own name (the setting refuses '/'), and
    # `calls close-lost --pbx-node` accepts it
    with pytest.raises(ConfigError, match="setting 'pbx_node'"):
        load_settings(config_file=None, environ={"CALLCONTROL_PBX_NODE": "pbx-a/2"})
    assert _NODE.fullmatch("pbx-a/2") and _NODE.fullmatch("pbx-a")
    assert not _NODE.fullmatch("pbx-a/0") and not _NODE.fullmatch("pbx-a/")


def test_a_host_name_node_is_cut_to_leave_room_for_the_worker() -> None:
    settings = load_settings(config_file=None, environ={"CALLCONTROL_WORKERS": "12"})
    node = settings.worker_node(12)
    assert node.endswith("/12") and len(node) <= 64
    assert node.removesuffix("/12") == settings.effective_pbx_node[:61]


@pytest.mark.parametrize("value", ["0", "17", "two", "1.5"])
def test_a_bad_workers_value_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match="setting 'workers'"):
        load_settings(config_file=None, environ={"CALLCONTROL_WORKERS": value})


@pytest.mark.parametrize("name", ["ari_app", "pbx_node"])
def test_names_too_long_for_a_worker_suffix_are_refused(name: str) -> None:
    env = {"CALLCONTROL_WORKERS": "2", f"CALLCONTROL_{name.upper()}": "x" * 63}
    with pytest.raises(ConfigError, match=re.escape(f"{name} must be at most 62 characters")):
        load_settings(config_file=None, environ=env)
    env["CALLCONTROL_WORKERS"] = "1"
    assert getattr(load_settings(config_file=None, environ=env), name) == "x" * 63


def test_serve_takes_the_worker_option_that_worker_1_passes() -> None:
    args = build_parser().parse_args(["--set", "workers=2", "serve", "--worker", "2"])
    assert args.worker == 2 and args.set == ["workers=2"]
    assert build_parser().parse_args(["serve"]).worker is None
