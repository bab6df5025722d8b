"""The machine contract (userdata/layout.py) is the only source of machine names: whatever the
renderer writes, the ops scripts run, the harnesses and the VM probe name must be defined there,
and docs/machine-layout.md says what the contract says."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from offline_render.fake_aws import AUTOSCALING_GROUP_TYPE
from offline_render.program import StackRender
from ops import scripts
from tests import REPO_ROOT
from userdata import layout
from userdata.render import written_files

# The directories the contract owns: any path under them must be a contract path.
OWNED_ROOTS = (layout.APP_ROOT, *layout.PER_MACHINE_DIRS)
_PATH = re.compile(r"(?<![\w.-])/(?:etc|srv|run|var|usr)/[\w./<>${}*-]*")
# A unit name, not an attribute (`self.service`) nor a manual page (`systemd.service(5)`).
_UNIT = re.compile(r"(?<![\w$.-])[a-z][a-z0-9-]*(?:-\$\w+|\$\{\w+\}|<\w+>)?\.service\b(?!\()")
# Debian's and AWS's own units that the machine scripts and the tests mention.
FOREIGN_UNITS = {"amazon-ssm-agent.service", "redis-server.service", "ssm-standin.service", "test-probe.service"}


def contract_constants() -> list[str]:
    return [value for name, value in vars(layout).items() if name.isupper() and isinstance(value, str)]


def contract_paths() -> set[str]:
    return {value for value in contract_constants() if value.startswith("/")}


def contract_units() -> set[str]:
    return {value for value in contract_constants() if value.endswith((".service", ".timer"))}


def undefined_path(path: str) -> bool:
    path = path.rstrip("/.")
    if "{" not in path:  # the end of a shell expansion: ${f#/etc/app/worker-}
        path = path.rstrip("}")
    if not any(path == root or path.startswith(root + "/") for root in OWNED_ROOTS):
        return False
    if path in contract_paths() or layout.env_file_variables(path) is not None:
        return False
    if path.startswith(layout.UNIT_DIR + "/"):
        unit = path.removeprefix(layout.UNIT_DIR + "/")
        return unit != "<unit>" and undefined_unit(unit)
    # Below these the names are the release's (or the venv's) own: releases/<release>/src/...
    open_dirs = (layout.RELEASES_DIR, layout.APP_SRC, layout.APP_BIN)
    if any(path.startswith(directory + "/") for directory in open_dirs):
        return False
    # A shell glob or variable standing for a queue, as the ops scripts list worker env files.
    return not re.fullmatch(re.escape(layout.WORKER_ENV_PREFIX) + r"(\*|\$\{?\w+\}?)" + r"(\.env)?", path)


def undefined_unit(unit: str) -> bool:
    if unit in contract_units() or unit in FOREIGN_UNITS:
        return False
    queue = layout.queue_of_worker_unit(unit)
    return queue is None or not re.fullmatch(r"[a-z][a-z0-9_-]*|\$\w+|\$\{\w+\}|<queue>", queue)


def names_outside_the_contract(text: str) -> list[str]:
    paths = [p for p in _PATH.findall(text) if undefined_path(p)]
    return paths + [u for u in _UNIT.findall(text) if undefined_unit(u)]


def every_ops_script() -> Iterable[str]:
    for role in layout.ROLES:
        for beat in (True, False):
            yield scripts.verify_script(role, expect_beat=beat, healthcheck_task="myapp.tasks.x", check_timeout=5)
        yield scripts.switch_release_script(role, "2026.11.25-1")
    yield from (scripts.beat_script("stop"), scripts.beat_script("start"), scripts.tasks_in_flight_script(5))
    yield from (scripts.current_release_script(), scripts.install_release_script("2026.11.25-1", "ab" * 32))


CONSUMER_SOURCES = [
    *sorted((REPO_ROOT / "tests/e2e/e2e_harness").glob("*.py")),
    REPO_ROOT / "scripts/vm/guest/probe.py",
    REPO_ROOT / "scripts/vm/boot.py",
    *sorted((REPO_ROOT / "ops").glob("*.py")),
]


def test_the_scan_catches_a_name_the_contract_does_not_define():
    assert names_outside_the_contract("cat /etc/app/ap.env; systemctl start celery-bet.service") == [
        "/etc/app/ap.env",
        "celery-bet.service",
    ]
    assert names_outside_the_contract(f"cat {layout.APP_ENV}; systemctl start {layout.worker_unit('long')}") == []


def test_every_rendered_file_names_only_contract_paths_and_units(prod: StackRender):
    for instance in prod.instances:
        for file in written_files(instance.user_data):
            assert not undefined_path(file.path), f"{instance.logical_name} writes {file.path}"
            found = names_outside_the_contract(file.content)
            assert found == [], f"{instance.logical_name} {file.path}: {found}"


def test_rendered_env_files_set_only_the_contracts_variables(prod: StackRender):
    for instance in prod.instances:
        for file in written_files(instance.user_data):
            allowed = layout.env_file_variables(file.path)
            if allowed is None:
                continue
            keys = [line.split("=", 1)[0] for line in file.content.splitlines() if line]
            assert set(keys) <= set(allowed), f"{file.path}: {sorted(set(keys) - set(allowed))} not in the contract"


def test_every_ops_script_names_only_contract_paths_units_and_variables():
    for script in every_ops_script():
        assert names_outside_the_contract(script) == [], script.splitlines()[0]
        # A variable the script reads but does not set comes from the machine's env files.
        assigned = set(re.findall(r"(?:^|[\s;(])(?:export\s+)?([A-Za-z_]\w*)=", script, re.M))
        assigned |= set(re.findall(r"\bfor\s+(\w+)\s+in\b", script))
        used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", script)) - assigned
        known = {name for names in layout.ENV_FILE_VARIABLES.values() for name in names}
        assert used <= known, f"{script.splitlines()[0]}: {sorted(used - known)} not in the contract"


@pytest.mark.parametrize("source", CONSUMER_SOURCES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_harnesses_ops_and_the_probe_spell_no_machine_name_of_their_own(source: Path):
    found = names_outside_the_contract(source.read_text())
    assert found == [], f"{source.relative_to(REPO_ROOT)} names what the contract does not define: {found}"
    # Defined once: a consumer imports the contract instead of typing its paths again.
    typed = [
        found.group()
        for found in _PATH.finditer(source.read_text())
        if any(found.group().startswith(root) for root in OWNED_ROOTS)
        and not source.read_text().startswith(":", found.end())  # a PATH list names directories, not files
    ]
    assert typed == [], f"{source.relative_to(REPO_ROOT)} types contract paths itself: {typed}"


def test_instances_carry_the_contracts_tags(prod: StackRender):
    # What each Auto Scaling group puts on its instances at launch.
    for group in prod.of_type(AUTOSCALING_GROUP_TYPE):
        assert all(tag["propagateAtLaunch"] for tag in group.inputs["tags"])
        tags = {tag["key"]: tag["value"] for tag in group.inputs["tags"]}
        assert tags[layout.ROLE_TAG] in layout.ROLES
        assert {layout.STACK_TAG, layout.PROJECT_TAG, layout.NAME_TAG} <= set(tags)
        assert set(tags) <= {layout.STACK_TAG, layout.PROJECT_TAG, layout.NAME_TAG, layout.ROLE_TAG, layout.BEAT_TAG}
    beats = [i.tags[layout.BEAT_TAG] for i in prod.instances if layout.BEAT_TAG in i.tags]
    assert beats == [layout.BEAT_TAG_VALUE]


def read_statement(prod: StackRender, sid: str) -> dict[str, Any]:
    (policy,) = [
        r.inputs
        for r in prod.resources
        if r.type_ == "aws:iam/rolePolicy:RolePolicy" and r.name == "prod-worker-read-secrets-and-releases"
    ]
    (statement,) = [s for s in json.loads(policy["policy"])["Statement"] if s["Sid"] == sid]
    return dict(statement)


def test_the_instance_role_reads_exactly_the_contracts_parameters(prod: StackRender):
    statement = read_statement(prod, "ReadStackSecrets")
    assert statement["Action"] == layout.INSTANCE_PARAMETER_ACTION
    names = sorted(arn.split(":parameter", 1)[1] for arn in statement["Resource"])
    assert names == sorted(layout.parameter_name("django-stack", "prod", p) for p in layout.INSTANCE_PARAMETERS)


def test_the_instance_role_reads_the_contracts_live_release_parameter(prod: StackRender):
    statement = read_statement(prod, "ReadLiveRelease")
    assert statement["Action"] == layout.RELEASE_PARAMETER_ACTION
    assert statement["Resource"].split(":parameter", 1)[1] == layout.parameter_name(
        "django-stack", "prod", layout.RELEASE_PARAMETER
    )


# --- docs/machine-layout.md ------------------------------------------------------------------------

DOC = REPO_ROOT / "docs/machine-layout.md"


def doc_terms() -> set[str]:
    return set(re.findall(r"`([^`]+)`", DOC.read_text()))


def test_the_doc_names_every_path_unit_variable_tag_and_parameter_of_the_contract():
    text = DOC.read_text()
    expected = {
        *(p for p in contract_paths() if p not in (layout.SBIN_DIR, layout.UNIT_DIR)),
        *contract_units(),
        layout.worker_unit("<queue>"),
        layout.worker_env_file("<queue>"),
        *(name for names in layout.ENV_FILE_VARIABLES.values() for name in names),
        layout.STACK_TAG,
        layout.PROJECT_TAG,
        layout.ROLE_TAG,
        layout.NAME_TAG,
        f"{layout.BEAT_TAG}={layout.BEAT_TAG_VALUE}",
        layout.INSTANCE_PARAMETER_ACTION,
        layout.RELEASE_PARAMETER_ACTION,
        *(layout.parameter_name("<project>", "<stack>", p) for p in layout.INSTANCE_PARAMETERS),
        layout.parameter_name("<project>", "<stack>", layout.RELEASE_PARAMETER),
    }
    missing = sorted(term for term in expected if term not in text)
    assert missing == [], f"docs/machine-layout.md does not mention: {missing}"


def test_the_doc_names_nothing_the_contract_does_not_define():
    found = sorted({name for term in doc_terms() for name in names_outside_the_contract(term)})
    assert found == [], f"docs/machine-layout.md names what userdata/layout.py does not define: {found}"
    actions = set(re.findall(r"ssm:\w+", DOC.read_text()))
    assert actions == {layout.INSTANCE_PARAMETER_ACTION, layout.RELEASE_PARAMETER_ACTION}, actions


# --- the VM guest's copy ---------------------------------------------------------------------------


def test_the_probe_imports_the_contract_as_the_image_installs_it(tmp_path: Path):
    build = (REPO_ROOT / "scripts/vm/build-rootfs.sh").read_text()
    (line,) = [line for line in build.splitlines() if "userdata/layout.py" in line and line.startswith("install")]
    guest_dir = tmp_path / "usr/local/lib/vm-test"
    installed = guest_dir / line.split("/usr/local/lib/vm-test/", 1)[1].strip('"')
    installed.parent.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "userdata/layout.py", installed)
    # The guest modules the image installs beside the probe (`install ... "$guest/<name>.py"`).
    for module in re.findall(r'"\$guest/(\w+\.py)"', build):
        shutil.copy(REPO_ROOT / "scripts/vm/guest" / module, guest_dir)
    # The guest's interpreter, as test-probe.service starts it: only the probe's own directory
    # and Debian's packages on the path.
    done = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import probe", guest_dir],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
