"""The instances: counts, hardening, tags, and Beat on exactly one worker."""

from __future__ import annotations

import json
import re

import pytest

from components.fleet import Fleet, FleetArgs
from tests.conftest import SECRET_SIG_KEY, named, of_type, only
from userdata.render import decode_user_data, enabled_units, written_files

INSTANCE = "aws:ec2/instance:Instance"


def instances(render):
    return {r.name: r.inputs for r in render.of_type(INSTANCE)}


def test_counts_and_roles_come_from_config(prod, render):
    assert {n: i["tags"]["Role"] for n, i in instances(prod).items()} == {
        "prod-web-0": "web",
        "prod-web-1": "web",
        "prod-worker-beat": "worker",
        "prod-worker-1": "worker",
    }
    bigger = instances(render({"web.count": 1, "worker.count": 4, "web.instanceType": "t3.large"}))
    assert sorted(bigger) == ["prod-web-0", "prod-worker-1", "prod-worker-2", "prod-worker-3", "prod-worker-beat"]
    assert bigger["prod-web-0"]["instanceType"] == "t3.large"


def test_every_instance_is_locked_down(prod):
    for name, inputs in instances(prod).items():
        assert inputs["metadataOptions"] == {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 1,
        }, name
        assert inputs["rootBlockDevice"]["encrypted"] is True, name
        assert inputs["associatePublicIpAddress"] is False, name
        assert "keyName" not in inputs, name
        assert inputs["iamInstanceProfile"] == "prod-profile", name
        assert inputs["userDataReplaceOnChange"] is True, name
        assert inputs["tags"]["Stack"] == "prod" and inputs["tags"]["Project"] == "django-stack"


def test_default_image_is_debian_12_from_debian(prod, render):
    assert {i["ami"] for i in instances(prod).values()} == {"ami-0a1b2c3d4e5f67890"}
    pinned = instances(render({"instances.amiId": "ami-0123456789abcdef0"}))
    assert {i["ami"] for i in pinned.values()} == {"ami-0123456789abcdef0"}


def test_beat_is_tagged_and_installed_on_exactly_one_worker(prod):
    tagged = [n for n, i in instances(prod).items() if i["tags"].get("celery-beat") == "true"]
    assert tagged == ["prod-worker-beat"]
    for name, inputs in instances(prod).items():
        units = enabled_units(decode_user_data(inputs["userDataBase64"]))
        assert ("celery-beat.service" in units) == (name == "prod-worker-beat"), name


def test_scaling_workers_never_moves_or_duplicates_beat(prod, render):
    beat_before = instances(prod)["prod-worker-beat"]
    for count in (1, 5):
        scaled = instances(render({"worker.count": count}))
        assert [n for n, i in scaled.items() if "celery-beat" in i["tags"]] == ["prod-worker-beat"]
        assert scaled["prod-worker-beat"] == beat_before  # identical inputs: no update, no replacement
        assert sum(i["tags"]["Role"] == "worker" for i in scaled.values()) == count


def test_beat_off_means_no_beat_anywhere(render):
    stack = instances(render({"worker.beat": False}))
    assert sorted(stack) == ["prod-web-0", "prod-web-1", "prod-worker-0", "prod-worker-1"]
    assert not any("celery-beat" in i["tags"] for i in stack.values())
    assert not any("celery-beat" in decode_user_data(i["userDataBase64"]) for i in stack.values())


def test_instances_spread_over_the_private_subnets(prod):
    subnets = {i["subnetId"] for i in instances(prod).values()}
    assert len(subnets) == 2


def test_no_secret_value_reaches_user_data_or_outputs(prod):
    token = only(prod, "aws:elasticache/replicationGroup:ReplicationGroup")["authToken"]["value"]
    key = next(
        r for r in prod.of_type("random:index/randomPassword:RandomPassword") if r.name == "prod-django-secret-key"
    )
    for inputs in instances(prod).values():
        text = decode_user_data(inputs["userDataBase64"])
        assert token not in text
        assert "/django-stack/prod/redis/auth-token" in text  # the parameter's name, not its value
        # The only broker URL is the fetch script's template, filled in on boot, and it verifies.
        assert re.findall(r"rediss://\S*", text) == ['rediss://:{token}@{host}:{port}/{db}?ssl_cert_reqs=required"']
    exported = json.dumps({k: str(v) for k, v in prod.outputs.items()})
    assert token not in exported and SECRET_SIG_KEY not in exported
    assert key.inputs["special"] is True


def test_access_grants_exactly_the_secrets_and_releases(prod):
    policy = json.loads(named(prod, "aws:iam/rolePolicy:RolePolicy", "prod-read-secrets-and-releases")["policy"])
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
    assume = json.loads(named(prod, "aws:iam/role:Role", "prod-role")["assumeRolePolicy"])
    assert assume["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_the_role_may_read_exactly_the_apps_own_secret_parameters(render):
    stack = render(
        {"app.secretParameters": {"EMAIL_API_KEY": "/myapp/prod/email-api-key", "STRIPE_KEY": "/myapp/prod/stripe"}}
    )
    policy = json.loads(named(stack, "aws:iam/rolePolicy:RolePolicy", "prod-read-secrets-and-releases")["policy"])
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
    stack = render({"app.environment": {"FEATURE_REPORTS": "on", "DATABASE_URL": "postgres://app@db.internal/app"}})
    for instance in stack.instances:
        app_env = next(f for f in written_files(instance.user_data) if f.path == "/etc/app/app.env").content
        assert app_env.endswith("FEATURE_REPORTS=on\nDATABASE_URL=postgres://app@db.internal/app\n")


def fleet_args(**changes: object) -> FleetArgs:
    values: dict[str, object] = {
        "web_count": 2,
        "web_instance_type": "t3.small",
        "web_security_group_id": "sg-0aaaaaaaaaaaaaaaa",
        "web_user_data": "d2Vi",
        "web_tags": {"Role": "web"},
        "worker_count": 2,
        "worker_instance_type": "t3.medium",
        "worker_security_group_id": "sg-0bbbbbbbbbbbbbbbb",
        "worker_user_data": "d29ya2Vy",
        "worker_tags": {"Role": "worker"},
        "beat_user_data": "YmVhdA==",
        "beat_tags": {"Role": "worker", "celery-beat": "true"},
        "ami_id": "ami-0123456789abcdef0",
        "architecture": "x86_64",
        "root_volume_gb": 30,
        "subnet_ids": ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"],
        "instance_profile_name": "t-profile",
        "kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab",
    }
    return FleetArgs(**(values | changes))  # type: ignore[arg-type]


def test_fleet_alone_gives_each_kind_of_machine_its_own_user_data_and_tags(build_alone):
    built = {r.name: r.inputs for r in of_type(build_alone(lambda: Fleet("t", fleet_args())), INSTANCE)}
    assert {name: (i["userDataBase64"], i["tags"]) for name, i in built.items()} == {
        "t-web-0": ("d2Vi", {"Role": "web", "Name": "t-web-0"}),
        "t-web-1": ("d2Vi", {"Role": "web", "Name": "t-web-1"}),
        "t-worker-beat": ("YmVhdA==", {"Role": "worker", "celery-beat": "true", "Name": "t-worker-beat"}),
        "t-worker-1": ("d29ya2Vy", {"Role": "worker", "Name": "t-worker-1"}),
    }
    assert built["t-worker-1"]["vpcSecurityGroupIds"] == ["sg-0bbbbbbbbbbbbbbbb"]
    assert built["t-web-1"]["subnetId"] == "subnet-0bbbbbbbbbbbbbbbb"
    assert {i["ami"] for i in built.values()} == {"ami-0123456789abcdef0"}
    assert {i["rootBlockDevice"]["volumeSize"] for i in built.values()} == {30}


def test_fleet_alone_without_beat_numbers_workers_from_zero(build_alone):
    built = of_type(build_alone(lambda: Fleet("t", fleet_args(web_count=0, beat_user_data=None))), INSTANCE)
    assert [r.name for r in built] == ["t-worker-0", "t-worker-1"]


def test_fleet_looks_up_debian_for_the_architecture_when_no_image_is_pinned(build_alone):
    built = of_type(build_alone(lambda: Fleet("t", fleet_args(ami_id=None, architecture="arm64"))), INSTANCE)
    assert {r.inputs["ami"] for r in built} == {"ami-0a1b2c3d4e5f67890"}  # the mocked lookup's answer


def test_fleet_refuses_an_unknown_architecture():
    with pytest.raises(ValueError, match="architecture: 'sparc'; allowed: x86_64, arm64"):
        fleet_args(architecture="sparc")
