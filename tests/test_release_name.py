"""One release-name rule: the stack config, the ops tool and scripts/build-release.sh accept
and refuse the same names."""

from __future__ import annotations

import json
import subprocess

import pytest

from config import ConfigError, load_settings
from ops.errors import UsageError
from ops.stack import checked_release
from tests import REPO_ROOT as ROOT
from tests.conftest import prod_config_values

REFUSED = ["r1+local", "r1\n", ".hidden", "-r1", "../etc", "a/b", "r" * 65, "r 1"]
ACCEPTED = ["r1", "2026.11.25-1", "v2_rc.3", "R" * 64]


def config_accepts(release: str) -> bool:
    values = prod_config_values()
    values["app"] = json.dumps(json.loads(values["app"]) | {"release": release})
    try:
        load_settings(values, stack="prod", region="eu-west-1")
    except ConfigError:
        return False
    return True


def ops_accepts(release: str) -> bool:
    try:
        checked_release(release)
    except UsageError:
        return False
    return True


@pytest.mark.parametrize("release", ACCEPTED)
def test_config_and_ops_accept_the_same_names(release):
    assert config_accepts(release) and ops_accepts(release)


@pytest.mark.parametrize("release", REFUSED)
def test_config_ops_and_the_build_script_refuse_the_same_names(release, tmp_path):
    assert not config_accepts(release)
    assert not ops_accepts(release)
    build = subprocess.run(
        ["bash", str(ROOT / "scripts/build-release.sh"), release, str(tmp_path)], capture_output=True, text=True
    )
    assert build.returncode == 2
    assert build.stderr.startswith("build-release: release ") and "is invalid; use up to 64" in build.stderr
    assert list(tmp_path.iterdir()) == []
