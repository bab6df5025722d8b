"""What lands on a machine, rendered by pure functions: no Pulumi, no AWS."""

from __future__ import annotations

import ast
import base64
import configparser
import gzip
import runpy
import subprocess
from pathlib import Path

import msgspec
import pytest
import yaml

from tests.conftest import GIVEN_CERTIFICATE, SMALL, kind_of
from tests.machine_scripts import shipped
from userdata import layout, render
from userdata.render import UserDataInputs
from userdata.shipped import SHIPPED, generated, shipped_script
from userdata.template import StrictTemplate

FILES = Path(render.__file__).parent / "files"


def machine(settings, role="worker", beat=False):
    return UserDataInputs(
        settings, kind_of(settings, role, beat), redis_host="master.example.cache.amazonaws.com", redis_port=6379
    )


def unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd directives are case-sensitive
    parser.read_string(text)
    return parser


def files_by_path(m: UserDataInputs) -> dict[str, render.WrittenFile]:
    return {f.path: f for f in render.machine_files(m)}


def test_each_role_gets_its_units(prod_settings):
    assert render.units_to_enable(machine(prod_settings, "web")) == [
        "app-release.service",
        "app-secrets.service",
        "app-release-command.service",
        "gunicorn.service",
    ]
    assert render.units_to_enable(machine(prod_settings)) == [
        "app-release.service",
        "app-secrets.service",
        "app-release-command.service",
        "celery-worker-default.service",
        "celery-worker-long.service",
        "app-warm-stop.service",
    ]
    assert render.units_to_enable(machine(prod_settings, beat=True))[-3:] == [
        "celery-beat.service",
        "app-warm-stop.service",
        "app-queue-metrics.timer",
    ]
    assert "celery-beat.service" not in render.unit_files(machine(prod_settings))
    for other in (machine(prod_settings), machine(prod_settings, "web")):
        assert not {"app-queue-metrics.service", "app-queue-metrics.timer"} & set(render.unit_files(other))
        assert "/usr/local/sbin/app-queue-metrics" not in files_by_path(other)
    assert "app-warm-stop.service" not in render.unit_files(machine(prod_settings, "web"))


def test_workers_get_the_termination_agent_with_the_hook_and_region(prod_settings):
    files = files_by_path(machine(prod_settings))
    unit = files["/etc/systemd/system/app-warm-stop.service"].content
    assert "Environment=AWS_REGION=eu-west-1 LIFECYCLE_HOOK_NAME=celery-warm-stop\n" in unit
    assert "ExecStart=/usr/bin/python3 /usr/local/sbin/app-warm-stop\n" in unit
    agent = files["/usr/local/sbin/app-warm-stop"]
    assert (agent.owner, agent.permissions) == ("root:root", "0755")
    assert agent.content == shipped_script("app-warm-stop")
    assert "/usr/local/sbin/app-warm-stop" not in files_by_path(machine(prod_settings, "web"))


def test_the_beat_instance_publishes_the_backlog_every_minute_with_the_contracts_names(prod_settings):
    files = files_by_path(machine(prod_settings, beat=True))
    timer = unit(files["/etc/systemd/system/app-queue-metrics.timer"].content)
    assert dict(timer["Timer"]) == {"OnCalendar": "minutely", "AccuracySec": "1s", "Persistent": "true"}
    assert timer["Install"]["WantedBy"] == "timers.target"
    text = files["/etc/systemd/system/app-queue-metrics.service"].content
    service = unit(text)["Service"]
    assert service["Type"] == "oneshot"
    assert service["ExecStart"] == "/usr/bin/python3 /usr/local/sbin/app-queue-metrics"
    environment = dict(
        word.split("=", 1)
        for line in text.splitlines()
        if line.startswith("Environment=")
        for word in line.removeprefix("Environment=").split()
    )
    assert environment == {
        "AWS_REGION": "eu-west-1",
        "METRICS_NAMESPACE": "DjangoStack/Celery/django-stack/prod",
        "STACK": "prod",
        "QUEUES": "default,long",
        "BEAT_UNIT": "celery-beat.service",
        "SECRETS_ENV_FILE": "/run/app-secrets/secrets.env",
        "BACKLOG_METRIC": "QueueBacklog",
        "HEARTBEAT_METRIC": "BeatHeartbeat",
        "STACK_DIMENSION": "Stack",
        "QUEUE_DIMENSION": "Queue",
    }
    # The broker URL comes from the secrets app-secrets fetched: it must have run. At boot a run
    # waits for Beat's start job: it reports Beat as it runs, not yet started.
    assert "Requires=app-secrets.service\n" in text
    assert "After=network-online.target app-secrets.service celery-beat.service\n" in text
    # Ordered only: a Beat that failed to start is then reported down, not the run skipped.
    dependencies = unit(text)["Unit"]
    assert "celery-beat.service" not in dependencies["Requires"] + dependencies.get("Wants", "")
    assert "EnvironmentFile" not in service  # reads only the broker URL line, not Django's key
    script = files["/usr/local/sbin/app-queue-metrics"]
    assert (script.owner, script.permissions, script.content) == (
        "root:root",
        "0755",
        shipped_script("app-queue-metrics"),
    )


def test_user_data_is_cloud_config_built_as_data(prod_settings):
    document = render.user_data(machine(prod_settings, beat=True))
    parsed = render.parse_user_data(document)
    assert list(parsed) == ["groups", "users", "packages", "write_files", "runcmd"]
    keyring = ["--keyring", "/etc/app/aws-agent-keys.asc"]
    assert parsed["runcmd"] == [
        ["systemctl", "enable", "--now", "--no-block", *render.units_to_enable(machine(prod_settings, beat=True))],
        ["/usr/local/sbin/install-aws-agent", *keyring, "amazon-ssm-agent", "3.3.4851.0", "eu-west-1"],
        [
            "/usr/local/sbin/install-aws-agent",
            *keyring,
            "--config",
            "/etc/app/cloudwatch-agent.json",
            "amazon-cloudwatch-agent",
            "1.300040.0b650",
            "eu-west-1",
        ],
    ]
    assert parsed["users"][0]["shell"] == "/usr/sbin/nologin" and "ssh_authorized_keys" not in parsed["users"][0]
    for entry in parsed["write_files"]:
        assert isinstance(entry["permissions"], str) and entry["permissions"].startswith("0")


def test_files_for_the_service_group_are_deferred_until_the_group_exists(prod_settings):
    for file in render.machine_files(machine(prod_settings, beat=True)):
        assert file.defer == file.owner.endswith(":app"), file.path
        if file.path.endswith(".env"):
            assert file.permissions == "0640"


def test_worker_units_outlast_the_hard_time_limit(prod_settings):
    units = render.unit_files(machine(prod_settings))
    for queue in prod_settings.worker.queues:
        service = unit(units[f"celery-worker-{queue.name}.service"])["Service"]
        assert int(service["TimeoutStopSec"]) > queue.hard_time_limit
        assert service["KillMode"] == "mixed"
        assert service["Restart"] == "always"
        assert service["User"] == "app" and service["WorkingDirectory"] == "/srv/app/current/src"
        assert "--queues ${CELERY_QUEUE}" in service["ExecStart"]


def test_app_units_read_the_plain_env_then_the_secrets(prod_settings):
    text = render.unit_files(machine(prod_settings, "web"))["gunicorn.service"]
    env_files = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("EnvironmentFile=")]
    assert env_files == [
        "/etc/app/app.env",
        "/srv/app/current/version.env",
        "/etc/app/gunicorn.env",
        "/run/app-secrets/secrets.env",
    ]
    assert "Requires=app-secrets.service app-release.service" in text


@pytest.mark.parametrize(
    "name",
    [
        "gunicorn.service",
        "app-secrets.service",
        "app-release.service",
        "app-queue-metrics.service",
        "app-boot-failed@.service",
    ],
)
def test_every_unit_carries_the_sandbox(prod_settings, name):
    units = {**render.unit_files(machine(prod_settings, "web")), **render.unit_files(machine(prod_settings, beat=True))}
    service = unit(units[name])["Service"]
    for directive, value in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallArchitectures", "native"),
    ]:
        assert service[directive] == value, directive


def test_beat_keeps_its_schedule_in_a_state_directory(prod_settings):
    service = unit(render.unit_files(machine(prod_settings, beat=True))["celery-beat.service"])["Service"]
    assert service["StateDirectory"] == "celery-beat"
    assert "--schedule /var/lib/celery-beat/schedule" in service["ExecStart"]


def test_celery_settings_come_through_the_env_file(prod_settings):
    env = render.app_env(prod_settings)
    assert env["CELERY_TASK_ROUTES"] == '{"myapp.tasks.generate_report":{"queue":"long"}}'
    assert env["CELERY_TASK_SOFT_TIME_LIMIT"] < env["CELERY_TASK_TIME_LIMIT"]
    assert env["CELERY_VISIBILITY_TIMEOUT"] > max(q.hard_time_limit for q in prod_settings.worker.queues)
    assert env["DJANGO_SETTINGS_MODULE"] == "proj.settings.production"


def test_secret_source_names_parameters_not_values(prod_settings):
    source = render.secrets_source_env(machine(prod_settings))
    assert source["AUTH_TOKEN_PARAMETER"] == "/django-stack/prod/redis/auth-token"
    assert source["RESULT_DB"] == 1  # prod enables the result backend
    assert "REDIS_CA_FILE" not in source  # ElastiCache chains to the system trust store


def test_env_values_quoted_for_systemd_and_shell():
    assert (
        render.render_env({"A": "plain/value:1", "B": '{"x": 1}', "C": 5}) == "A=plain/value:1\nB='{\"x\": 1}'\nC=5\n"
    )
    with pytest.raises(ValueError, match="B: value contains a quote"):
        render.render_env({"B": "it's"})


def test_compressed_user_data_is_deterministic_and_fits_ec2(prod_settings):
    m = machine(prod_settings, beat=True)
    first, second = render.user_data_base64(m), render.user_data_base64(m)
    assert first == second
    assert len(base64.b64decode(first)) < render.USER_DATA_LIMIT < len(render.user_data(m))
    assert render.decode_user_data(first) == render.user_data(m)
    assert gzip.decompress(base64.b64decode(first)).startswith(b"#cloud-config\n")


def test_a_document_zlib_fits_keeps_zlibs_bytes(prod_settings):
    """Stacks already up keep their launch templates' bytes: no instance is replaced for zopfli."""
    document = render.user_data(machine(prod_settings, beat=True))
    assert render.pack_user_data(document) == gzip.compress(document.encode(), compresslevel=9, mtime=0)


def test_a_document_past_zlibs_limit_is_packed_smaller_by_zopfli_into_the_same_gzip(prod_settings, monkeypatch):
    document = render.user_data(machine(prod_settings, beat=True))
    by_zlib = len(gzip.compress(document.encode(), compresslevel=9, mtime=0))
    monkeypatch.setattr(render, "USER_DATA_LIMIT", by_zlib - 1)
    packed = render.pack_user_data(document)
    assert len(packed) < by_zlib * 0.97  # prod's Beat worker: 4.4 % smaller
    assert packed == render.pack_user_data(document)  # the same settings, the same bytes
    assert packed[:8] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00"  # gzip, deflate, no name, mtime 0
    assert gzip.decompress(packed) == document.encode()
    assert render.decode_user_data(render.user_data_base64(machine(prod_settings, beat=True))) == document


def test_user_data_over_the_ec2_limit_is_a_clear_error(prod_settings, monkeypatch):
    monkeypatch.setattr(render, "USER_DATA_LIMIT", 1000)
    with pytest.raises(ValueError, match=r"worker user-data is \d+ bytes compressed; EC2 allows 1000"):
        render.user_data_base64(machine(prod_settings))


def test_reading_back_a_document(prod_settings):
    document = render.user_data(machine(prod_settings, "web"))
    assert render.enabled_units(document) == render.units_to_enable(machine(prod_settings, "web"))
    assert [f.path for f in render.written_files(document)] == [
        f.path for f in render.machine_files(machine(prod_settings, "web"))
    ]
    with pytest.raises(ValueError, match="does not start with '#cloud-config'"):
        render.parse_user_data(yaml.safe_dump({"runcmd": []}))


def test_reading_back_any_cloud_config_with_cloud_inits_defaults():
    # Owner, permissions and content are optional in cloud-init's write_files (bench/vm_boot.py's
    # trivial boot leaves the first two out): read with cloud-init's defaults, not a KeyError.
    document = "#cloud-config\n" + yaml.safe_dump(
        {"write_files": [{"path": "/etc/x", "content": "y\n"}, {"path": "/e"}]}
    )
    assert render.written_files(document) == [
        render.WrittenFile("/etc/x", "y\n", "root:root", "0644"),
        render.WrittenFile("/e", "", "root:root", "0644"),
    ]


def test_templates_refuse_a_placeholder_without_a_value_and_keep_systemd_syntax():
    template = StrictTemplate("ExecStart=x ${CELERY_QUEUE}@%H $MAINPID {{ user }}\n")
    assert template.substitute(user="app") == "ExecStart=x ${CELERY_QUEUE}@%H $MAINPID app\n"
    with pytest.raises(KeyError, match="user"):
        template.substitute()
    with pytest.raises(ValueError, match="Invalid placeholder"):
        StrictTemplate("{{ Not-A-Name }}").substitute()


def with_agents(settings, ssm_agent="install", log_agent="install"):
    return msgspec.structs.replace(
        settings,
        instances=msgspec.structs.replace(settings.instances, ssm_agent=ssm_agent),
        logs=msgspec.structs.replace(settings.logs, agent=log_agent),
    )


def installed_agents(settings) -> list[str]:
    return [c[-3] for c in render.cloud_config(machine(settings))["runcmd"] if c[0].endswith("install-aws-agent")]


def test_both_agents_are_installed_beside_the_units_unless_the_image_has_them_or_logs_are_off(prod_settings):
    assert installed_agents(prod_settings) == ["amazon-ssm-agent", "amazon-cloudwatch-agent"]
    # Started first, without waiting (--no-block): the agents install while the release does
    # (app-boot-failed writes a failed unit's lines again once the log agent runs).
    assert render.cloud_config(machine(prod_settings))["runcmd"][0][:4] == [
        "systemctl",
        "enable",
        "--now",
        "--no-block",
    ]
    # An image's CloudWatch agent still has to be started with the stack's config: the installer
    # only starts an agent that is present.
    assert installed_agents(with_agents(prod_settings, log_agent="preinstalled")) == installed_agents(prod_settings)
    assert installed_agents(with_agents(prod_settings, ssm_agent="preinstalled")) == ["amazon-cloudwatch-agent"]
    assert installed_agents(with_agents(prod_settings, log_agent="off")) == ["amazon-ssm-agent"]
    neither = with_agents(prod_settings, ssm_agent="preinstalled", log_agent="off")
    assert installed_agents(neither) == []
    paths = set(files_by_path(machine(neither)))
    assert {"/usr/local/sbin/install-aws-agent", "/etc/app/aws-agent-keys.asc"}.isdisjoint(paths)
    assert "/etc/app/cloudwatch-agent.json" not in paths
    assert "/etc/app/cloudwatch-agent.json" in files_by_path(
        machine(with_agents(prod_settings, log_agent="preinstalled"))
    )


def test_the_machine_carries_awss_keyring_as_the_repo_ships_it(prod_settings):
    keyring = files_by_path(machine(prod_settings))["/etc/app/aws-agent-keys.asc"]
    assert (keyring.owner, keyring.permissions) == ("root:root", "0644")
    in_repo = (FILES.parent / "keys" / "aws-agent-keys.asc").read_text()
    assert keyring.content.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n") and in_repo.endswith(keyring.content)


def test_only_the_keyring_changes_when_a_test_swaps_it(prod_settings):
    document = render.user_data(machine(prod_settings))
    swapped = render.with_agent_keyring(document, "THROWAWAY KEY\n")
    before, after = render.parse_user_data(document), render.parse_user_data(swapped)
    keyring = [f for f in after["write_files"] if f["path"] == "/etc/app/aws-agent-keys.asc"]
    assert keyring[0]["content"] == "THROWAWAY KEY\n"
    keyring[0]["content"] = render.AWS_AGENT_KEYRING
    assert after == before


def test_a_keyring_swap_refuses_user_data_without_agents(prod_settings):
    baked = with_agents(prod_settings, ssm_agent="preinstalled", log_agent="off")
    with pytest.raises(ValueError, match=r"aws-agent-keys\.asc"):
        render.with_agent_keyring(render.user_data(machine(baked)), "THROWAWAY KEY\n")


def installer():
    return runpy.run_path(str(shipped("install-aws-agent")))


def test_each_agent_and_its_signature_come_from_the_regions_own_bucket_at_the_pinned_release():
    package_url = installer()["package_url"]
    assert package_url("amazon-ssm-agent", "3.3.4851.0", "eu-west-1", "x86_64") == (
        "https://s3.eu-west-1.amazonaws.com/amazon-ssm-eu-west-1/3.3.4851.0/debian_amd64/amazon-ssm-agent.deb"
    )
    assert package_url("amazon-ssm-agent", "3.3.4851.0", "us-east-2", "aarch64").endswith(
        "/amazon-ssm-us-east-2/3.3.4851.0/debian_arm64/amazon-ssm-agent.deb"
    )
    # AWS's layout: s3.<region>.amazonaws.com/amazoncloudwatch-agent-<region>/debian/<arch>/<release>/
    assert package_url("amazon-cloudwatch-agent", "1.300040.0b650", "eu-west-1", "x86_64") == (
        "https://s3.eu-west-1.amazonaws.com/amazoncloudwatch-agent-eu-west-1/debian/amd64/1.300040.0b650/"
        "amazon-cloudwatch-agent.deb"
    )


def test_agent_urls_honour_an_s3_endpoint_override_with_the_same_path():
    package_url = installer()["package_url"]
    assert package_url("amazon-ssm-agent", "3.3.4851.0", "eu-west-1", "x86_64", "https://127.0.0.1:4443/") == (
        "https://127.0.0.1:4443/amazon-ssm-eu-west-1/3.3.4851.0/debian_amd64/amazon-ssm-agent.deb"
    )


def test_the_agent_versions_are_the_configs_and_follow_one_rule(prod_settings):
    instances = msgspec.structs.replace(prod_settings.instances, ssm_agent_version="3.3.5000.0")
    logs = msgspec.structs.replace(prod_settings.logs, agent_version="1.300071.0b1")
    commands = render.cloud_config(machine(msgspec.structs.replace(prod_settings, instances=instances, logs=logs)))
    installs = [c for c in commands["runcmd"] if c[0].endswith("install-aws-agent")]
    assert [c[-3:] for c in installs] == [
        ["amazon-ssm-agent", "3.3.5000.0", "eu-west-1"],
        ["amazon-cloudwatch-agent", "1.300071.0b1", "eu-west-1"],
    ]
    # The installer's own check is the machine contract's (it cannot import it).
    assert installer()["VERSION_PATTERN"] == layout.AGENT_VERSION_PATTERN


def test_the_installer_knows_only_the_two_agents_and_says_so():
    result = subprocess.run(
        [
            "/usr/bin/python3",
            str(shipped("install-aws-agent")),
            "--keyring",
            "/dev/null",
            "amazon-ecs-agent",
            "3.3.4851.0",
            "eu-west-1",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "invalid choice: 'amazon-ecs-agent'" in result.stderr and "amazon-cloudwatch-agent" in result.stderr


def test_release_env_names_the_live_release_parameter_not_a_release(prod_settings):
    env = render.release_env(prod_settings)
    assert env == {
        "RELEASE_PARAMETER": "/django-stack/prod/release",
        "AWS_REGION": "eu-west-1",
        "ARTIFACT_BUCKET": "example-django-stack-releases",
        "ARTIFACT_PREFIX": "releases/",
    }
    written = files_by_path(machine(prod_settings))["/etc/app/release.env"]
    assert (written.owner, written.permissions) == ("root:root", "0640")
    assert "RELEASE_PARAMETER=/django-stack/prod/release\n" in written.content


def test_user_data_does_not_depend_on_the_configured_release(prod_settings):
    # app.release only seeds the live release parameter: changing it must not replace instances
    # (user_data_replace_on_change) that would then boot the live release anyway.
    other = msgspec.structs.replace(prod_settings.app, release="2099.01.01-1")
    changed = msgspec.structs.replace(prod_settings, app=other)
    for role, beat in (("web", False), ("worker", True)):
        assert render.user_data(machine(changed, role, beat)) == render.user_data(machine(prod_settings, role, beat))


@pytest.mark.parametrize("name", ["gunicorn.service", "celery-worker-default.service", "celery-beat.service"])
def test_app_units_take_app_release_from_the_release_they_run(prod_settings, name):
    units = render.unit_files(machine(prod_settings, "web")) | render.unit_files(machine(prod_settings, beat=True))
    files = [line for line in units[name].splitlines() if line.startswith("EnvironmentFile=")]
    assert files[:2] == ["EnvironmentFile=/etc/app/app.env", "EnvironmentFile=/srv/app/current/version.env"]
    assert "APP_RELEASE" not in render.app_env(prod_settings)


def ip_address_deny(text: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("IPAddressDeny=")]


def test_app_units_cannot_reach_the_instance_metadata_service_unless_the_stack_opts_in(prod_settings):
    units = {
        **render.unit_files(machine(prod_settings, "web")),
        **render.unit_files(machine(prod_settings, "worker", beat=True)),
    }
    app_units = sorted(name for name in units if name.startswith(("gunicorn", "celery-")))
    assert app_units == [
        "celery-beat.service",
        "celery-worker-default.service",
        "celery-worker-long.service",
        "gunicorn.service",
    ]
    for name in app_units:
        assert ip_address_deny(units[name]) == ["169.254.169.254 fd00:ec2::254"], name
    # Those that call AWS with the role keep it.
    for name in ("app-secrets.service", "app-release.service", "app-warm-stop.service", "app-queue-metrics.service"):
        assert ip_address_deny(units[name]) == [], name
    opted_in = msgspec.structs.replace(
        prod_settings, app=msgspec.structs.replace(prod_settings.app, aws_credentials=True)
    )
    for text in render.unit_files(machine(opted_in, "worker", beat=True)).values():
        assert ip_address_deny(text) == []


class _WithoutAnnotations(ast.NodeTransformer):
    """A syntax tree as python-minifier leaves it with remove_annotations: no argument or return
    annotation, an annotated assignment outside a class plain (or gone without a value)."""

    def __init__(self) -> None:
        self.in_class: list[bool] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        self.in_class.append(True)
        self.generic_visit(node)
        self.in_class.pop()
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        self.in_class.append(False)
        node.returns = None
        self.generic_visit(node)
        self.in_class.pop()
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if self.in_class and self.in_class[-1]:
            return node  # a dataclass field: kept whole
        return None if node.value is None else ast.Assign(targets=[node.target], value=node.value, lineno=0)


def _program(source: str) -> str:
    """The syntax tree with docstrings cut to what ships (the module's first line, nothing of a
    function's or class's) and without annotations; comments are not in the tree at all."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if ast.get_docstring(node, clean=False) is None:
            continue
        if isinstance(node, ast.Module):
            node.body[0].value.value = node.body[0].value.value.split("\n")[0]  # type: ignore[attr-defined]
        elif len(node.body) > 1:
            node.body = node.body[1:]
    return ast.dump(_WithoutAnnotations().visit(tree), annotate_fields=False)


@pytest.mark.parametrize("name", sorted(p.name for p in FILES.iterdir()))
def test_a_shipped_script_is_its_source_without_explanations_or_annotations(name):
    source, shipped_text = (FILES / name).read_text(), shipped_script(name)
    assert _program(shipped_text) == _program(source)
    assert shipped_text.splitlines()[0] == source.splitlines()[0] == "#!/usr/bin/python3"
    assert not [line for line in shipped_text.splitlines()[1:] if line.lstrip().startswith("#")]
    assert "\t" not in shipped_text  # YAML would write the whole file as one escaped line
    assert len(shipped_text) < 0.7 * len(source)  # the explanations and the layout were most of it


def test_the_committed_shipped_scripts_are_generated_from_their_sources():
    # userdata/shipped/ is what machines get: regenerated here, it must be byte for byte the same.
    assert sorted(p.name for p in SHIPPED.iterdir()) == sorted(p.name for p in FILES.iterdir())
    stale = [name for name in sorted(p.name for p in FILES.iterdir()) if shipped_script(name) != generated(name)]
    assert stale == [], "run: .venv/bin/python -m userdata.shipped"


@pytest.mark.parametrize("role, beat", [("web", False), ("worker", False), ("worker", True)])
def test_a_failed_boot_unit_reports_the_instance_unhealthy_after_its_logs_shipped(prod_settings, role, beat):
    m = machine(prod_settings, role, beat)
    units = render.unit_files(m)
    for oneshot in ("app-secrets.service", "app-release.service"):
        assert unit(units[oneshot])["Unit"]["OnFailure"] == "app-boot-failed@%N.service", oneshot
    handler = unit(units["app-boot-failed@.service"])
    assert "Install" not in handler  # started by OnFailure= only
    assert handler["Service"]["ExecStart"] == "/usr/bin/python3 /usr/local/sbin/app-boot-failed %i"
    environment = dict(word.split("=", 1) for word in handler["Service"]["Environment"].split())
    # Well past the CloudWatch agent's 5 s flush: the failure's lines leave before the instance.
    assert environment == {"AWS_REGION": "eu-west-1", "REPORT_DELAY_SECONDS": "60"}
    # The delay, then the failed unit's lines again and 10 s for the log agent to ship them.
    assert int(handler["Service"]["TimeoutStartSec"]) > 60 + 10 + 30
    assert "app-boot-failed@.service" not in render.units_to_enable(m)
    script = files_by_path(m)["/usr/local/sbin/app-boot-failed"]
    assert (script.content, script.permissions) == (shipped_script("app-boot-failed"), "0755")
    # It waits for the log agent the user-data starts, by that unit's name.
    agent = layout.CLOUDWATCH_AGENT_UNIT.removesuffix(".service")
    assert f'["systemctl", "is-active", "{agent}"]' in (FILES / "app-boot-failed").read_text()


# --- Django behind the load balancer (docs/django-settings.md) ---------------------------------------


def rendered_app_env(stack) -> dict[str, str]:
    """app.env as the web instance's user-data writes it, read back as systemd would."""
    (web,) = {i.user_data for i in stack.instances if i.tags["Role"] == "web"}
    (app_env,) = [f for f in render.written_files(web) if f.path == "/etc/app/app.env"]
    lines = (line.split("=", 1) for line in app_env.content.splitlines())
    return {name: value.removeprefix("'").removesuffix("'") for name, value in lines}


def test_behind_the_stacks_load_balancer_with_a_domain_django_trusts_its_proxy_header_and_origin(prod):
    env = rendered_app_env(prod)
    assert env["DJANGO_SECURE_PROXY_SSL_HEADER"] == "HTTP_X_FORWARDED_PROTO,https"
    assert env["DJANGO_CSRF_TRUSTED_ORIGINS"] == "https://app.example.com"
    assert env["DJANGO_ALLOWED_HOSTS"] == "app.example.com"  # listed once though both name it


def test_the_load_balancers_domain_is_an_allowed_host_even_when_allowed_hosts_omit_it(render):
    env = rendered_app_env(render({"app.allowedHosts": ["www.example.com"]}))
    assert env["DJANGO_ALLOWED_HOSTS"] == "www.example.com,app.example.com"


def test_a_load_balancer_without_a_domain_is_trusted_for_the_scheme_and_adds_no_origin(render):
    env = rendered_app_env(render(GIVEN_CERTIFICATE))
    assert env["DJANGO_SECURE_PROXY_SSL_HEADER"] == "HTTP_X_FORWARDED_PROTO,https"
    assert "DJANGO_CSRF_TRUSTED_ORIGINS" not in env
    assert env["DJANGO_ALLOWED_HOSTS"] == "app.example.com"


def test_without_the_stacks_load_balancer_no_forwarded_header_is_trusted(render):
    # Whoever web.ingress* lets in could set X-Forwarded-Proto: the stack cannot vouch for it.
    env = rendered_app_env(render(SMALL))
    assert "DJANGO_SECURE_PROXY_SSL_HEADER" not in env
    assert "DJANGO_CSRF_TRUSTED_ORIGINS" not in env


def test_the_app_serves_the_running_releases_static_files_and_bridges_the_installed_ones(prod):
    env = rendered_app_env(prod)
    assert env["DJANGO_STATIC_ROOT"] == "/srv/app/current/static"  # the artifact's static/, via current
    assert env["DJANGO_STATIC_BRIDGE_ROOT"] == "/srv/app/static"
    # ... which is where the machine's app-release keeps the installed releases' hashed files.
    tool = runpy.run_path(str(FILES / "app-release"), run_name="app_release")
    assert str(tool["STATIC_BRIDGE"]) == env["DJANGO_STATIC_BRIDGE_ROOT"]


def test_the_sweep_removes_shipped_copies_of_dead_runs_only(monkeypatch, tmp_path):
    import os

    from tests import machine_scripts

    monkeypatch.setattr(machine_scripts.tempfile, "gettempdir", lambda: str(tmp_path))
    child = subprocess.Popen(["true"])  # its pid names a process that has exited (and been reaped)
    child.wait()
    mine, gone = tmp_path / f"shipped-{os.getpid()}-abc", tmp_path / f"shipped-{child.pid}-def"
    mine.mkdir()
    gone.mkdir()
    machine_scripts.sweep_shipped_dirs()
    assert mine.is_dir() and not gone.exists()
