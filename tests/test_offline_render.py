"""The offline main job: what a reviewer reads and diffs instead of running `pulumi up`."""

from __future__ import annotations

import contextlib
import io
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from offline_render.cli import main
from tests import REPO_ROOT

# One xdist worker runs them all (scripts/test.sh: --dist loadgroup): the prod output they share is made once.
pytestmark = pytest.mark.xdist_group("offline-render")


@pytest.fixture(scope="module")
def prod_written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The main job run once for prod: the directory it wrote and what it printed."""
    out = tmp_path_factory.mktemp("prod")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["--stack", "prod", "--out", str(out)]) == 0
    return out, printed.getvalue()


def test_writes_each_instances_user_data_files_and_the_resource_table(prod_written):
    out, printed = prod_written
    # The resource count changes with every component; the instances are what this job is for.
    assert re.search(r"stack prod: \d+ resources, 4 instances", printed)
    assert sorted(p.name for p in out.iterdir()) == ["resources.md", "web-0", "web-1", "worker-0", "worker-beat-0"]
    beat = out / "worker-beat-0"
    assert (beat / "user-data.yaml").read_text().startswith("#cloud-config\n")
    assert (beat / "files/etc/systemd/system/celery-beat.service").is_file()
    assert not (out / "worker-0/files/etc/systemd/system/celery-beat.service").exists()
    script = beat / "files/usr/local/sbin/app-fetch-secrets"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    table = (out / "resources.md").read_text()
    assert "| `aws:elasticache/replicationGroup:ReplicationGroup` | `prod-redis-group` |" in table
    assert '"authToken": "[secret]"' in table and "Mock0" not in table


def test_unknown_stack_is_named(capsys):
    # The stacks this checkout has (a user's own Pulumi.dev.yaml among them), not a list by hand.
    stacks = sorted(p.name.split(".")[1] for p in REPO_ROOT.glob("Pulumi.*.yaml"))
    missing = "qa" + "x" * max(map(len, stacks))
    expected = f"--stack '{missing}': no Pulumi.{missing}.yaml (stacks: {', '.join(stacks)})"
    with pytest.raises(SystemExit, match=re.escape(expected) + "$"):
        main(["--stack", missing])


def test_two_renders_are_byte_identical(prod_written, tmp_path):
    (first, _), second = prod_written, tmp_path
    assert main(["--out", str(second)]) == 0  # prod, the default stack
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files and all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


def test_runs_as_a_module_from_the_repository(tmp_path):
    # What scripts/render.sh runs: `python -m offline_render`, the program found next to it.
    done = subprocess.run(
        [sys.executable, "-m", "offline_render", "--stack", "staging", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "worker-beat-0/files/etc/systemd/system/celery-beat.service").is_file()
