"""What cloud-init and systemd would say about the rendered files, before anything runs."""

from __future__ import annotations

import json
import subprocess

from e2e_harness.deployment import Deployment
from e2e_harness.machine import run_as_root
from e2e_harness.units import MAX_EXPOSURE, exposure

from tests.conftest import rendered
from userdata import render


def cloud_config_keys() -> set[str]:
    """Every top-level key some cloud-init module reads, from Debian's cloud-init schema."""
    code = "import json; from cloudinit.config.schema import get_schema; print(json.dumps(get_schema()))"
    schema = json.loads(
        subprocess.run(["/usr/bin/python3", "-c", code], check=True, capture_output=True, text=True).stdout
    )
    keys: set[str] = set()
    for ref in schema["allOf"]:
        keys |= set(schema["$defs"][ref["$ref"].split("/")[-1]].get("properties", {}))
    return keys


def test_cloud_init_schema_accepts_every_rendered_user_data(stack: Deployment, tmp_path) -> None:
    for instance in stack.render.instances:
        document = tmp_path / f"{instance.logical_name}.yaml"
        document.write_text(instance.user_data)
        result = subprocess.run(
            ["cloud-init", "schema", "--config-file", str(document)], capture_output=True, text=True
        )
        assert result.returncode == 0 and "Valid cloud-config" in result.stdout, (
            f"{instance.logical_name}: {result.stdout}{result.stderr}"
        )


def test_cloud_init_unpacks_user_data_packed_by_zlib_and_by_zopfli(monkeypatch) -> None:
    """cloud-init's own reader (user_data.convert_string, what it runs on the user-data it
    fetched) gives back prod's Beat worker's document from either packing: zlib's, and zopfli's,
    which a document past zlib's 16 KiB ships with. cloud-init passes bytes it cannot unpack
    through as they are, so the payload is what is compared."""
    document = next(i.user_data for i in rendered("prod").instances if i.logical_name.startswith("worker-beat"))
    by_zlib = render.pack_user_data(document)
    monkeypatch.setattr(render, "USER_DATA_LIMIT", len(by_zlib) - 1)
    by_zopfli = render.pack_user_data(document)
    assert len(by_zopfli) < len(by_zlib)
    code = (
        "import sys; from cloudinit.user_data import convert_string; "
        "sys.stdout.buffer.write(convert_string(sys.stdin.buffer.read()).get_payload(decode=True))"
    )
    for packed in (by_zlib, by_zopfli):
        read = subprocess.run(["/usr/bin/python3", "-c", code], input=packed, capture_output=True, check=True)
        assert read.stdout.decode() == document


def test_every_top_level_cloud_config_key_is_one_cloud_init_reads(stack: Deployment) -> None:
    # cloud-init schema passes misspelled top-level keys; cloud-init then ignores them at boot.
    known = cloud_config_keys()
    import yaml

    for instance in stack.render.instances:
        unknown = set(yaml.safe_load(instance.user_data)) - known
        assert not unknown, f"{instance.logical_name}: keys no cloud-init module reads: {sorted(unknown)}"


def test_systemd_analyze_verify_prints_nothing_for_any_unit(stack: Deployment) -> None:
    # Run where the machine's paths exist (its /etc/systemd/system, /srv/app with the release
    # activated by its own app-release.service), so verify also checks that every ExecStart=
    # binary is there. Any output is a failure: verify exits 0 on unknown directives.
    for machine in stack.machines.values():
        machine.run_oneshot("app-release.service")
        paths = [f"/etc/systemd/system/{unit}" for unit in machine.unit_files()]
        result = run_as_root(machine, ["systemd-analyze", "verify", *paths])
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 0 and output == "", f"{machine.hostname}: {output}"


def test_systemd_analyze_security_scores_every_unit_at_most_2(stack: Deployment) -> None:
    scores = {}
    for machine in stack.machines.values():
        for unit in (name for name in machine.unit_files() if name.endswith(".service")):
            scores[unit] = exposure(str(machine.host_path(f"/etc/systemd/system/{unit}")))
    too_exposed = {unit: checks for unit, (score, checks) in scores.items() if score > MAX_EXPOSURE}
    assert not too_exposed, "exposure above 2.0: " + json.dumps(
        {unit: {"score": scores[unit][0], "failing": checks} for unit, checks in too_exposed.items()}, indent=1
    )
    assert {
        "gunicorn.service",
        "celery-worker-default.service",
        "celery-worker-long.service",
        "celery-beat.service",
        "app-secrets.service",
        "app-release.service",
        "app-warm-stop.service",
        "app-queue-metrics.service",
    } <= set(scores)


def test_beat_unit_is_on_exactly_the_machine_tagged_celery_beat(stack: Deployment) -> None:
    with_beat = [m.hostname for m in stack.machines.values() if "celery-beat.service" in m.units]
    tagged = [i.tags["Name"] for i in stack.render.instances if i.tags.get("celery-beat") == "true"]
    assert with_beat == tagged and len(tagged) == 1
