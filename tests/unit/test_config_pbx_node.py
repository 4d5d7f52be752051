"""The setting pbx_node: the PBX an app serves, written into its call records."""

from __future__ import annotations

import socket

import pytest

from callcontrol.config import load_settings
from callcontrol.errors import ConfigError


def test_pbx_node_defaults_to_the_host_name_and_may_be_set() -> None:
    default = load_settings(config_file=None, environ={})
    assert default.pbx_node == ""
    assert default.effective_pbx_node == socket.gethostname().partition(".")[0][:64]
    named = load_settings(config_file=None, environ={"CALLCONTROL_PBX_NODE": "pbx-b.2"})
    assert named.effective_pbx_node == "pbx-b.2"


@pytest.mark.parametrize("value", ["two words", "-dash", "x" * 65, "a;b"])
def test_a_bad_pbx_node_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match="setting 'pbx_node'"):
        load_settings(config_file=None, environ={"CALLCONTROL_PBX_NODE": value})
