"""The machines: a launch template and an Auto Scaling group per kind (web, worker, Beat), their
sizes, hardening, tags, health checks, rolling refresh, the pinned image, and Beat alone."""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pytest

from components.fleet import BOOT_GRACE_SECONDS, Fleet, FleetArgs, GroupSize, MachineGroupArgs
from offline_render.fake_aws import AUTOSCALING_GROUP_TYPE, LAUNCH_TEMPLATE_TYPE, mock_id
from tests import REPO_ROOT
from tests.conftest import SECRET_SIG_KEY, SMALL, diffed, kind_of, named, of_type
from userdata.render import UserDataInputs, decode_user_data, enabled_units, user_data_base64, written_files

KINDS = ("web", "worker", "worker-beat")

# prod with every fleet key these tests read moved off its default, rendered once for all of them
# (a render is ~0.2 s of the unit lane's CPU); each test checks only its own keys' effect.
TUNED = {
    "web.minSize": 3,
    "web.desiredCapacity": 5,
    "web.maxSize": 8,
    "worker.maxSize": 10,
    "instances.rootVolumeGb": 40,
    "instances.amiId": "ami-0123456789abcdef0",
    "instances.minHealthyPercentage": 50,
    "worker.stopMarginSeconds": 300,
    "app.environment": {"FEATURE_REPORTS": "on", "DATABASE_URL": "postgres://app@db.internal/app"},
    "app.secretParameters": {"EMAIL_API_KEY": "/myapp/prod/email-api-key", "STRIPE_KEY": "/myapp/prod/stripe"},
}


def templates(render) -> dict[str, dict[str, Any]]:
    return {r.name.removeprefix("prod-"): r.inputs for r in render.of_type(LAUNCH_TEMPLATE_TYPE)}


def groups(render) -> dict[str, dict[str, Any]]:
    return {r.name.removeprefix("prod-"): r.inputs for r in render.of_type(AUTOSCALING_GROUP_TYPE)}


def sizes(group: dict[str, Any]) -> tuple[int, int, int]:
    return group["minSize"], group["desiredCapacity"], group["maxSize"]


def group_tags(group: dict[str, Any]) -> dict[str, str]:
    assert all(tag["propagateAtLaunch"] is True for tag in group["tags"])
    return {tag["key"]: tag["value"] for tag in group["tags"]}


def test_one_group_per_kind_sized_from_config(prod, render):
    assert {kind: sizes(group) for kind, group in groups(prod).items()} == {
        "web": (2, 2, 6),
        "worker": (1, 1, 4),
        "worker-beat": (1, 1, 1),
    }
    bigger = groups(render(TUNED))
    assert sizes(bigger["web"]) == (3, 5, 8)
    assert sizes(bigger["worker"]) == (1, 1, 10)
    assert sizes(bigger["worker-beat"]) == (1, 1, 1)
    assert prod.of_type("aws:ec2/instance:Instance") == []


def test_each_group_launches_its_own_template(prod):
    for kind, group in groups(prod).items():
        assert group["launchTemplate"] == {"id": mock_id("lt", f"prod-{kind}"), "version": "1"}, kind
        # The new version of a changed template, not "$Latest": the group's input changes with
        # the template, which is what starts the instance refresh.


def test_every_launch_template_is_locked_down(prod, render):
    # The stack key: the one the SecureStrings are encrypted with.
    (stack_key,) = {p.inputs["keyId"] for p in prod.of_type("aws:ssm/parameter:Parameter") if "keyId" in p.inputs}
    for kind, template in templates(prod).items():
        assert template["metadataOptions"] == {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 1,
        }, kind
        (interface,) = template["networkInterfaces"]
        assert interface["associatePublicIpAddress"] == "false", kind
        assert interface["securityGroups"] == [mock_id("sg", "prod-web" if kind == "web" else "prod-worker")], kind
        assert "keyName" not in template, kind
        assert template["iamInstanceProfile"] == {"name": f"prod-{kind}-profile"}, kind
        (root,) = template["blockDeviceMappings"]
        assert root["deviceName"] == "/dev/xvda"
        assert root["ebs"] == {
            "encrypted": "true",
            "kmsKeyId": stack_key,
            "volumeType": "gp3",
            "volumeSize": 20,
            "deleteOnTermination": "true",
        }, kind
        assert template["updateDefaultVersion"] is True
    assert templates(prod)["web"]["instanceType"] == "t3.small"
    assert templates(prod)["worker-beat"]["instanceType"] == templates(prod)["worker"]["instanceType"] == "t3.medium"
    assert templates(render(TUNED))["web"]["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 40


def test_templates_carry_exactly_the_rendered_user_data(prod, prod_settings):
    host = "master.prod-redis-group.abc123.euw1.cache.amazonaws.com"  # the fake ElastiCache's endpoint
    for kind, role, runs_beat in (("web", "web", False), ("worker", "worker", False), ("worker-beat", "worker", True)):
        expected = user_data_base64(
            UserDataInputs(prod_settings, kind_of(prod_settings, role, runs_beat), redis_host=host, redis_port=6379)
        )
        assert templates(prod)[kind]["userData"] == expected, kind


def test_instances_get_the_tags_the_ops_tool_finds_at_launch(prod):
    assert {kind: group_tags(group) for kind, group in groups(prod).items()} == {
        "web": {"Project": "django-stack", "Stack": "prod", "Role": "web", "Name": "prod-web"},
        "worker": {"Project": "django-stack", "Stack": "prod", "Role": "worker", "Name": "prod-worker"},
        "worker-beat": {
            "Project": "django-stack",
            "Stack": "prod",
            "Role": "worker",
            "celery-beat": "true",
            "Name": "prod-worker-beat",
        },
    }
    for kind, template in templates(prod).items():
        (volumes,) = template["tagSpecifications"]
        assert volumes["resourceType"] == "volume" and volumes["tags"]["Name"] == f"prod-{kind}"


def slowest_measured_boot_seconds() -> float:
    """The slowest boot-to-ready of bench/vm_boot.py's row in docs/performance.md, the one place
    the figure is recorded (qemu start to every unit active, per kind of machine)."""
    performance = (REPO_ROOT / "docs/performance.md").read_text()
    row = next(line for line in performance.splitlines() if line.startswith("| `bench/vm_boot.py`"))
    return max(float(seconds) for seconds in re.findall(r"(?:web|worker|Beat) (\d+(?:\.\d+)?) s", row))


def test_web_is_health_checked_by_the_load_balancer_and_workers_by_ec2(prod):
    https = next(r.inputs for r in prod.of_type("aws:lb/listener:Listener") if r.inputs["protocol"] == "HTTPS")
    web, worker, beat = (groups(prod)[kind] for kind in KINDS)
    assert web["healthCheckType"] == "ELB"
    assert web["targetGroupArns"] == [https["defaultActions"][0]["targetGroupArn"]]
    assert worker["healthCheckType"] == beat["healthCheckType"] == "EC2"
    assert not worker.get("targetGroupArns") and not beat.get("targetGroupArns")
    assert BOOT_GRACE_SECONDS > slowest_measured_boot_seconds()
    assert {group["healthCheckGracePeriod"] for group in (web, worker, beat)} == {BOOT_GRACE_SECONDS}


def test_own_load_balancer_attaches_the_web_group_to_the_users_target_groups(render):
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/theirs/0123456789abcdef"
    stack = render({"loadBalancer": {"enabled": False}, "web.targetGroupArns": [arn]})
    assert stack.of_type("aws:lb/loadBalancer:LoadBalancer") == []
    web = groups(stack)["web"]
    assert (web["targetGroupArns"], web["healthCheckType"]) == ([arn], "ELB")
    assert groups(render(SMALL))["web"]["healthCheckType"] == "EC2"


def test_template_changes_roll_out_by_instance_refresh(prod, render):
    for kind in ("web", "worker"):
        assert groups(prod)[kind]["instanceRefresh"] == {
            "strategy": "Rolling",
            "preferences": {
                "minHealthyPercentage": 90,
                "maxHealthyPercentage": 190,
                "instanceWarmup": str(BOOT_GRACE_SECONDS),
                "autoRollback": True,
            },
        }, kind
    relaxed = groups(render(TUNED))
    assert relaxed["web"]["instanceRefresh"]["preferences"]["minHealthyPercentage"] == 50
    assert relaxed["web"]["instanceRefresh"]["preferences"]["maxHealthyPercentage"] == 150


def test_beat_is_replaced_terminate_first_whatever_the_config(prod, render):
    for stack in (prod, render({"instances.minHealthyPercentage": 100})):
        beat = groups(stack)["worker-beat"]
        assert sizes(beat) == (1, 1, 1)
        preferences = beat["instanceRefresh"]["preferences"]
        assert (preferences["minHealthyPercentage"], preferences["maxHealthyPercentage"]) == (0, 100)


def test_every_beat_replacement_terminates_before_it_launches(prod, render):
    """Health and rebalance replacements follow the group's instance maintenance policy (not
    the refresh preferences): terminate-then-launch on Beat's group, the default elsewhere."""
    for stack in (prod, render({"instances.minHealthyPercentage": 100})):
        web, worker, beat = (groups(stack)[kind] for kind in KINDS)
        assert beat["instanceMaintenancePolicy"] == {"minHealthyPercentage": 0, "maxHealthyPercentage": 100}
        assert "instanceMaintenancePolicy" not in web and "instanceMaintenancePolicy" not in worker


def test_beat_is_tagged_and_installed_on_exactly_one_kind(prod):
    for kind, template in templates(prod).items():
        units = enabled_units(decode_user_data(template["userData"]))
        assert ("celery-beat.service" in units) == (kind == "worker-beat"), kind
        assert ("celery-beat" in group_tags(groups(prod)[kind])) == (kind == "worker-beat"), kind
        assert any(unit.startswith("celery-worker-") for unit in units) == (kind != "web"), kind


def test_beat_off_means_no_beat_group_and_no_beat_anywhere(render):
    stack = render({"worker.beat": False})
    assert sorted(groups(stack)) == ["web", "worker"]
    for template in templates(stack).values():
        document = decode_user_data(template["userData"])
        assert "celery-beat.service" not in enabled_units(document)
        assert "/etc/systemd/system/celery-beat.service" not in document


def changed_inputs(before, after) -> dict[str, set[str]]:
    """resource (type, name) -> the top-level inputs that differ between two renders."""
    old = {(r.type_, r.name): diffed(r.inputs) for r in before.resources}
    new = {(r.type_, r.name): diffed(r.inputs) for r in after.resources}
    assert old.keys() == new.keys(), "a resource appeared or disappeared"
    return {
        key: {name for name in old[key].keys() | new[key].keys() if old[key].get(name) != new[key].get(name)}
        for key in old
        if old[key] != new[key]
    }


def test_a_queue_change_only_changes_the_worker_templates_user_data(prod, render):
    queues = json.loads(json.dumps(prod_queues()))
    queues[0]["concurrency"] = 8
    changed = changed_inputs(prod, render({"worker.queues": queues}))
    # A new template version; the groups follow its latestVersion (1 -> 2 in AWS, the same
    # number under the mocks), which starts a refresh: nothing else changes, nothing is replaced.
    assert changed == {
        (LAUNCH_TEMPLATE_TYPE, "prod-worker"): {"userData"},
        (LAUNCH_TEMPLATE_TYPE, "prod-worker-beat"): {"userData"},
    }


def test_a_size_change_only_changes_that_groups_sizes(prod, render):
    changed = changed_inputs(prod, render({"web.desiredCapacity": 3}))
    assert changed == {(AUTOSCALING_GROUP_TYPE, "prod-web"): {"desiredCapacity"}}


def test_a_web_config_change_touches_neither_the_load_balancer_nor_the_groups(prod, render):
    # One worker more than prod's 3: the config test_offline_render's diff renders, one render for both.
    changed = changed_inputs(prod, render({"web.gunicornWorkers": 4}))
    assert changed == {(LAUNCH_TEMPLATE_TYPE, "prod-web"): {"userData"}}


# Inputs whose change makes the AWS provider replace the resource (ForceNew in its schema).
REPLACED_ON_CHANGE = {
    AUTOSCALING_GROUP_TYPE: {"name", "namePrefix"},
    LAUNCH_TEMPLATE_TYPE: {"name", "namePrefix"},
    "aws:lb/loadBalancer:LoadBalancer": {"name", "namePrefix", "internal", "loadBalancerType"},
    "aws:lb/targetGroup:TargetGroup": {"name", "namePrefix", "port", "protocol", "targetType", "vpcId"},
}


# The changes a stack sees day to day, made at once: one render shows that none of them (nor any
# mix of them) reaches an input whose change replaces the load balancer or a group.
DAY_TO_DAY_CHANGES = {
    "app.release": "2026.12.01-1",
    "web.instanceType": "t3.large",
    "web.gunicornTimeout": 60,
    "worker.stopMarginSeconds": 120,
    "instances.minHealthyPercentage": 50,
    "instances.rootVolumeGb": 40,
    "loadBalancer.healthCheckPath": "/ready",
    "worker.maxSize": 9,
}


def test_no_config_change_outside_amiId_replaces_the_load_balancer_or_a_group(prod, render):
    changed = changed_inputs(prod, render(DAY_TO_DAY_CHANGES))
    reached = {type_ for type_, _ in changed}
    assert reached >= {AUTOSCALING_GROUP_TYPE, LAUNCH_TEMPLATE_TYPE, "aws:lb/targetGroup:TargetGroup"}, reached
    for (type_, name), inputs in changed.items():
        assert not inputs & REPLACED_ON_CHANGE.get(type_, set()), (type_, name, inputs)


def prod_queues() -> list[dict[str, Any]]:
    from tests.conftest import prod_config_values

    return json.loads(prod_config_values()["worker"])["queues"]


def test_default_image_is_debian_12_from_debian_and_amiId_pins_it(prod, render):
    assert {t["imageId"] for t in templates(prod).values()} == {"ami-0a1b2c3d4e5f67890"}
    pinned = templates(render(TUNED))
    assert {t["imageId"] for t in pinned.values()} == {"ami-0123456789abcdef0"}


def group_args(kind: str, **changes: object) -> MachineGroupArgs:
    values: dict[str, object] = {
        "kind": kind,
        "size": GroupSize(0, 1, 2),
        "instance_type": "t3.medium",
        "security_group_id": "sg-0bbbbbbbbbbbbbbbb",
        "user_data": "d29ya2Vy",
        "tags": {"Role": "worker"},
        "instance_profile_name": f"t-{kind}-profile",
        "role_name": f"t-{kind}-role",
        "min_healthy_percentage": 90,
        "termination_hold_seconds": 600,
    }
    return MachineGroupArgs(**(values | changes))  # type: ignore[arg-type]


WEB = group_args(
    "web",
    size=GroupSize(1, 2, 3),
    instance_type="t3.small",
    security_group_id="sg-0aaaaaaaaaaaaaaaa",
    user_data="d2Vi",
    tags={"Role": "web"},
    termination_hold_seconds=None,
)
WORKER = group_args("worker")
BEAT = group_args(
    "worker-beat",
    size=GroupSize(1, 1, 1),
    user_data="YmVhdA==",
    tags={"Role": "worker", "celery-beat": "true"},
    min_healthy_percentage=0,
    terminate_first=True,
)


def fleet_args(**changes: object) -> FleetArgs:
    values: dict[str, object] = {
        "kinds": [WEB, WORKER, BEAT],
        "ami_id": "ami-0123456789abcdef0",
        "architecture": "x86_64",
        "root_volume_gb": 30,
        "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab",
        "subnet_ids": ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"],
        "termination_hook_name": "celery-warm-stop",
    }
    return FleetArgs(**(values | changes))  # type: ignore[arg-type]


def test_fleet_alone_gives_each_kind_its_own_template_group_and_tags(build_alone):
    built = build_alone(lambda: Fleet("t", fleet_args()))
    templates = {r.name: r.inputs for r in of_type(built, LAUNCH_TEMPLATE_TYPE)}
    assert {name: t["userData"] for name, t in templates.items()} == {
        "t-web": "d2Vi",
        "t-worker": "d29ya2Vy",
        "t-worker-beat": "YmVhdA==",
    }
    assert templates["t-worker-beat"]["networkInterfaces"][0]["securityGroups"] == ["sg-0bbbbbbbbbbbbbbbb"]
    assert {t["imageId"] for t in templates.values()} == {"ami-0123456789abcdef0"}
    assert {t["blockDeviceMappings"][0]["ebs"]["volumeSize"] for t in templates.values()} == {30}
    built_groups = {r.name: r.inputs for r in of_type(built, AUTOSCALING_GROUP_TYPE)}
    assert {name: (sizes(g), group_tags(g)) for name, g in built_groups.items()} == {
        "t-web": ((1, 2, 3), {"Role": "web", "Name": "t-web"}),
        "t-worker": ((0, 1, 2), {"Role": "worker", "Name": "t-worker"}),
        "t-worker-beat": ((1, 1, 1), {"Role": "worker", "celery-beat": "true", "Name": "t-worker-beat"}),
    }
    for group in built_groups.values():
        assert group["vpcZoneIdentifiers"] == ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]


def test_fleet_alone_without_beat_has_no_beat_group(build_alone):
    built = build_alone(lambda: Fleet("t", fleet_args(kinds=[WEB, WORKER])))
    assert sorted(r.name for r in of_type(built, AUTOSCALING_GROUP_TYPE)) == ["t-web", "t-worker"]
    policies = {r.name: r.inputs["role"] for r in of_type(built, "aws:iam/rolePolicy:RolePolicy")}
    assert policies == {
        "t-web-report-failed-boot": "t-web-role",
        "t-worker-report-failed-boot": "t-worker-role",
        "t-worker-complete-termination": "t-worker-role",
    }


def test_fleet_refuses_two_kinds_of_one_name_and_a_hold_auto_scaling_refuses():
    with pytest.raises(ValueError, match=r"kinds: \['web', 'web'\]; needs at least one, each named once"):
        fleet_args(kinds=[WEB, WEB])
    with pytest.raises(ValueError, match="termination_hold_seconds: 7201; allowed: 30 to 7200"):
        group_args("worker", termination_hold_seconds=7201)


def test_fleet_looks_up_debian_for_the_architecture_when_no_image_is_pinned(build_alone):
    built = build_alone(lambda: Fleet("t", fleet_args(ami_id=None, architecture="arm64")))
    # the mocked lookup's answer
    assert {r.inputs["imageId"] for r in of_type(built, LAUNCH_TEMPLATE_TYPE)} == {"ami-0a1b2c3d4e5f67890"}


def test_fleet_refuses_an_unknown_architecture():
    with pytest.raises(ValueError, match="architecture: 'sparc'; allowed: x86_64, arm64"):
        fleet_args(architecture="sparc")


def ignored_changes(build_alone, args: FleetArgs) -> dict[tuple[str, str], list[str]]:
    """Each child's ignore_changes, by (type, name), as the engine would receive them."""
    ignored: dict[tuple[str, str], list[str]] = {}

    def record(resource: pulumi.ResourceTransformationArgs) -> None:
        ignored[(resource.type_, resource.name)] = list(resource.opts.ignore_changes or [])

    build_alone(lambda: Fleet("t", args, opts=pulumi.ResourceOptions(transformations=[record])))
    return ignored


def test_a_looked_up_image_is_kept_until_the_user_names_one(build_alone):
    # Debian publishes new images often: the lookup's first answer stays in the templates.
    looked_up = ignored_changes(build_alone, fleet_args(ami_id=None))
    assert {key: value for key, value in looked_up.items() if value} == {
        (LAUNCH_TEMPLATE_TYPE, name): ["imageId"] for name in ("t-web", "t-worker", "t-worker-beat")
    }
    # A named image is the user's decision: changing it rolls the groups.
    named = ignored_changes(build_alone, fleet_args())
    assert named and all(value == [] for value in named.values())


def test_root_volumes_use_the_stacks_kms_key_when_given(build_alone):
    key = "arn:aws:kms:eu-west-1:123456789012:key/0a1b2c3d-1111-2222-3333-444455556666"
    built = build_alone(lambda: Fleet("t", fleet_args(kms_key_arn=key)))
    for template in of_type(built, LAUNCH_TEMPLATE_TYPE):
        assert template.inputs["blockDeviceMappings"][0]["ebs"]["kmsKeyId"] == key


def test_bad_group_sizes_are_refused():
    with pytest.raises(ValueError, match="min_size <= desired_capacity <= max_size"):
        GroupSize(2, 1, 3)


def test_user_data_names_the_token_parameter_and_only_a_verifying_url_template(prod):
    # The values themselves: tests/test_secrets.py searches every input, output and user-data.
    for template in templates(prod).values():
        text = decode_user_data(template["userData"])
        assert "/django-stack/prod/redis/auth-token" in text  # the parameter's name, not its value
        # The only broker URL is the fetch script's template, filled in on boot, and it verifies.
        assert re.findall(r'rediss://[^"\s]*', text) == ["rediss://:{token}@{host}:{port}/{db}?ssl_cert_reqs=required"]
    assert SECRET_SIG_KEY not in json.dumps(prod.outputs)


def test_access_grants_exactly_the_secrets_and_releases(prod):
    policy = json.loads(named(prod, "aws:iam/rolePolicy:RolePolicy", "prod-web-read-secrets-and-releases")["policy"])
    assert policy["Statement"] == [
        {
            "Action": "ssm:GetParameters",
            "Effect": "Allow",
            "Resource": [
                "arn:aws:ssm:eu-west-1:123456789012:parameter/django-stack/prod/redis/auth-token",
                "arn:aws:ssm:eu-west-1:123456789012:parameter/django-stack/prod/django/secret-key",
            ],
            "Sid": "ReadStackSecrets",
        },
        {
            "Action": "ssm:GetParameter",
            "Effect": "Allow",
            "Resource": "arn:aws:ssm:eu-west-1:123456789012:parameter/django-stack/prod/release",
            "Sid": "ReadLiveRelease",
        },
        {
            "Action": "s3:GetObject",
            "Effect": "Allow",
            "Resource": [
                "arn:aws:s3:::example-django-stack-releases/releases/*.tar.gz",
                "arn:aws:s3:::example-django-stack-releases/releases/*.tar.gz.sha256",
            ],
            "Sid": "ReadReleaseArtifacts",
        },
    ]
    assume = json.loads(named(prod, "aws:iam/role:Role", "prod-web-role")["assumeRolePolicy"])
    assert assume["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_the_role_may_read_exactly_the_apps_own_secret_parameters(render):
    stack = render(TUNED)
    policy = json.loads(
        named(stack, "aws:iam/rolePolicy:RolePolicy", "prod-worker-read-secrets-and-releases")["policy"]
    )
    assert policy["Statement"][0]["Resource"] == [
        "arn:aws:ssm:eu-west-1:123456789012:parameter/django-stack/prod/redis/auth-token",
        "arn:aws:ssm:eu-west-1:123456789012:parameter/django-stack/prod/django/secret-key",
        "arn:aws:ssm:eu-west-1:123456789012:parameter/myapp/prod/email-api-key",
        "arn:aws:ssm:eu-west-1:123456789012:parameter/myapp/prod/stripe",
    ]
    # Fetched at boot by name: neither value nor parameter ends up anywhere but the source env.
    web = next(i for i in stack.instances if i.role == "web")
    files = {f.path: f.content for f in written_files(web.user_data)}
    assert (
        "SECRET_PARAMETERS=EMAIL_API_KEY=/myapp/prod/email-api-key,STRIPE_KEY=/myapp/prod/stripe\n"
        in (files["/etc/app/secrets-source.env"])
    )
    assert "EMAIL_API_KEY" not in files["/etc/app/app.env"]


def test_the_apps_own_environment_is_written_to_app_env_after_the_stacks(render):
    stack = render(TUNED)
    for instance in stack.instances:
        app_env = next(f for f in written_files(instance.user_data) if f.path == "/etc/app/app.env").content
        assert app_env.endswith("FEATURE_REPORTS=on\nDATABASE_URL=postgres://app@db.internal/app\n")


def test_terminating_workers_are_held_for_their_longest_task(prod, render):
    hooks = {r.name: r.inputs for r in prod.of_type("aws:autoscaling/lifecycleHook:LifecycleHook")}
    assert sorted(hooks) == ["prod-worker-beat-warm-stop", "prod-worker-warm-stop"]
    for kind in ("worker", "worker-beat"):
        hook = hooks[f"prod-{kind}-warm-stop"]
        assert hook["autoscalingGroupName"] == f"prod-{kind}"  # the group's (mock) name
        assert (hook["name"], hook["lifecycleTransition"], hook["defaultResult"]) == (
            "celery-warm-stop",
            "autoscaling:EC2_INSTANCE_TERMINATING",
            "CONTINUE",
        )
        # prod: the long queue's hard limit 1800 s + the 60 s stop margin, and a margin more.
        assert hook["heartbeatTimeout"] == 1800 + 60 + 60
    longer = render(TUNED)
    assert {r.inputs["heartbeatTimeout"] for r in longer.of_type("aws:autoscaling/lifecycleHook:LifecycleHook")} == {
        2400
    }


def test_each_worker_kinds_role_completes_lifecycle_actions_only_on_its_own_group(prod):
    arn = "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:prod-{0}-id:autoScalingGroupName/prod-{0}"
    for kind in ("worker", "worker-beat"):
        inputs = named(prod, "aws:iam/rolePolicy:RolePolicy", f"prod-{kind}-complete-termination")
        assert inputs["role"] == f"prod-{kind}-role"
        statements = {s["Sid"]: s for s in json.loads(inputs["policy"])["Statement"]}
        assert statements["CompleteOwnTermination"] == {
            "Sid": "CompleteOwnTermination",
            "Effect": "Allow",
            "Action": "autoscaling:CompleteLifecycleAction",
            "Resource": arn.format(kind),
        }
        assert statements["FindOwnGroup"]["Action"] == "autoscaling:DescribeAutoScalingInstances"
        assert set(statements) == {"CompleteOwnTermination", "FindOwnGroup"}
