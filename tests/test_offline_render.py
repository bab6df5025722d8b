"""The offline main job: what a reviewer reads and diffs instead of running `pulumi up`."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import stat
from pathlib import Path

import pytest

import offline_render.cli
from offline_render.cli import main
from offline_render.compare import compare, read_snapshot, snapshot_of
from offline_render.report import render_files
from tests import REPO_ROOT
from tests.conftest import rendered
from userdata.render import written_files

# The tests that read prod_written run on one xdist worker (scripts/test.sh: --dist loadgroup), so
# the prod output they share is made once; the others go to any worker.
shares_prod_written = pytest.mark.xdist_group("offline-render-prod")


@pytest.fixture(scope="module")
def prod_written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The main job run once for prod: the directory it wrote and what it printed."""
    out = tmp_path_factory.mktemp("prod")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["--stack", "prod", "--out", str(out)]) == 0
    return out, printed.getvalue()


@shares_prod_written
def test_writes_each_machine_kinds_user_data_files_and_the_resource_table(prod_written):
    out, printed = prod_written
    # The resource count changes with every component; the machines are what this job is for.
    assert re.search(r"stack prod: \d+ resources; machines: web \(web, 2 instances\), worker \(worker, 1", printed)
    # One directory per launch template, not per instance: every instance of a group boots the same.
    kinds = ["web", "worker", "worker-beat"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["documents", "policies", *RENDER_FILES, *kinds])
    beat = out / "worker-beat"
    assert (beat / "user-data.yaml").read_text().startswith("#cloud-config\n")
    assert json.loads((beat / "tags.json").read_text())["Name"] == "prod-worker-beat"
    assert (beat / "files/etc/systemd/system/celery-beat.service").is_file()
    assert not (out / "worker/files/etc/systemd/system/celery-beat.service").exists()
    script = beat / "files/usr/local/sbin/app-fetch-secrets"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    table = (out / "resources.md").read_text()
    assert "- `aws:elasticache/replicationGroup:ReplicationGroup` **prod-redis-group** (protected): " in table
    assert "authTokenWo=[write-only]" in table and "valueWo=[write-only]" in table


RENDER_FILES = ["resources.json", "resources.md"]
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


@shares_prod_written
def test_the_resource_table_reads_line_by_line(prod_written):
    out, _ = prod_written
    table = (out / "resources.md").read_text()
    lines = table.splitlines()
    assert max(map(len, lines)) <= 400
    # No blob: the launch templates' 14-19 KB user-data was one line of base64 before.
    assert not re.search(r"[A-Za-z0-9+/=]{100,}", table)
    # A count by type at the top, adding up to the whole stack.
    counts = [int(n) for n in re.findall(r"^\| (\d+) \| `[^`]+` \|$", table, re.M)]
    total = int(re.match(r"# Stack `prod`: (\d+) resources", table).group(1))
    assert sum(counts) == total == len(json.loads((out / "resources.json").read_text())["resources"])
    # Grouped by component: a resource's line sits under its component's, indented.
    fleet = lines.index("- `djangostack:fleet:Fleet` **prod**")
    # (the template under its kind's MachineGroup, under the Fleet)
    group = lines.index("  - `djangostack:fleet:MachineGroup` **prod-web**")
    template = next(i for i, line in enumerate(lines) if line.startswith(f"    - `{LAUNCH_TEMPLATE}` **prod-web**"))
    assert fleet < group < template and all(line.startswith("  ") for line in lines[fleet + 1 : template + 1])
    # Blobs point at the file the render writes; a policy is pretty-printed there.
    assert "userData=→ web/user-data.yaml (gzip+base64, sha256 " in lines[template]
    assert "policy=→ policies/prod-key.policy.json (sha256 " in table
    key_policy = json.loads((out / "policies/prod-key.policy.json").read_text())
    assert (
        key_policy["Version"] == "2012-10-17" and (out / "policies/prod-key.policy.json").read_text().count("\n") > 10
    )
    assert "dashboardBody=→ documents/prod-dashboard.dashboardBody.json" in table
    # The fake AWS's values are marked; the stack's own are not.
    assert "vpcId=«vpc-" in table and "cidrBlock=10.40.0.0/16" in table
    assert "«master.prod-redis-group.abc123.euw1.cache.amazonaws.com»" in table


def test_placeholders_follow_the_region(tmp_path):
    # The region test_access renders for its partition check: one render for both.
    render = rendered("prod", {"aws:region": "us-gov-west-1"})
    (group,) = render.of_type("aws:elasticache/replicationGroup:ReplicationGroup")
    host = f"master.{group.name}.abc123.usgw1.cache.amazonaws.com"
    assert host in render.placeholders
    for kind in render.kinds:  # what the machines would connect to
        assert any(f"REDIS_HOST={host}\n" in f.content for f in written_files(kind.user_data)), kind.name
        assert "euw1" not in kind.user_data


@shares_prod_written
def test_the_output_directory_is_replaced_not_merged(prod_written, tmp_path):
    out = tmp_path / "build"
    shutil.copytree(prod_written[0], out)  # a previous render
    (out / "web-1").mkdir()  # what an older render left: one directory per instance
    (out / "web-1/tags.json").write_text("{}")
    assert main(["--stack", "staging", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["documents", "policies", *RENDER_FILES, "web", "worker", "worker-beat"]
    )
    assert json.loads((out / "web/tags.json").read_text())["Stack"] == "staging"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]  # no staging or retired directory left


def test_a_directory_that_is_not_a_render_is_left_alone(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")

    def rendered_first(*args: object, **kwargs: object) -> None:
        raise AssertionError("rendered before refusing --out")

    monkeypatch.setattr(offline_render.cli, "render_stack", rendered_first)  # refused before any wait
    with pytest.raises(SystemExit, match=r"--out .*: not empty and not a render \(no resources.md\)"):
        main(["--out", str(tmp_path)])
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_unknown_stack_is_named(capsys):
    # The stacks this checkout has (a user's own Pulumi.dev.yaml among them), not a list by hand.
    stacks = sorted(p.name.split(".")[1] for p in REPO_ROOT.glob("Pulumi.*.yaml"))
    missing = "qa" + "x" * max(map(len, stacks))
    expected = f"--stack '{missing}': no Pulumi.{missing}.yaml (stacks: {', '.join(stacks)})"
    with pytest.raises(SystemExit, match=re.escape(expected) + "$"):
        main(["--stack", missing])


@shares_prod_written
def test_two_renders_are_byte_identical(prod_written, tmp_path):
    (first, _), second = prod_written, tmp_path
    assert main(["--out", str(second)]) == 0  # prod, the default stack
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files and all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


# --- what changed against a previous render --------------------------------------------------


@shares_prod_written
def test_a_change_of_gunicorn_workers_is_one_line_in_each_web_file_and_one_key(prod_written):
    out, _ = prod_written
    workers = int(re.search(r"^GUNICORN_WORKERS=(\d+)$", (out / "web/files/etc/app/gunicorn.env").read_text(), re.M)[1])
    changed = snapshot_of(render_files(rendered("prod", {"web.gunicornWorkers": workers + 1})))
    difference = compare(read_snapshot(out), changed)
    assert (difference.added, difference.removed) == ([], [])
    assert difference.changed == {f"{LAUNCH_TEMPLATE}::prod-web": ["userData"]}
    assert "web/files/etc/app/gunicorn.env" in difference.files and "web/user-data.yaml" in difference.files
    for path, diff in difference.files.items():
        assert path.startswith("web/"), path
        body = [line for line in diff if not line.startswith(("---", "+++", "@@"))]
        assert [line for line in body if line[0] in "+-"] == [
            f"-{line}" for line in [next(b[1:] for b in body if b[0] == "-")]
        ] + [f"+{line}" for line in [next(b[1:] for b in body if b[0] == "+")]], path
    summary = difference.summary("the prod render")
    assert f"  ~ {LAUNCH_TEMPLATE}::prod-web: userData\n" in summary
    assert f"+GUNICORN_WORKERS={workers + 1}" in summary and "  web/: " in summary


@shares_prod_written
def test_compares_with_a_render_directory_and_with_a_git_revision(prod_written, tmp_path):
    out, _ = prod_written
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["--out", str(tmp_path / "again"), "--compare", str(out)]) == 0
    assert f"compared with {out}: 0 resources added, 0 changed, 0 removed\nfiles: no changes\n" in printed.getvalue()
    # A revision is rendered from a copy of its files (git archive), by this checkout's renderer:
    # `python -m offline_render` run from the repository, what scripts/render.sh runs.
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["--out", str(tmp_path / "head"), "--compare", "HEAD"]) == 0
    assert re.search(r"compared with HEAD: \d+ resources added, \d+ changed, \d+ removed", printed.getvalue())
    with pytest.raises(SystemExit, match=r"--compare no-such-revision: not a directory, nor a git revision"):
        main(["--out", str(tmp_path / "bad"), "--compare", "no-such-revision"])
    assert not (tmp_path / "bad").exists()
