"""The Pulumi project's own name: the program reads its config under it and names what must be
unique in an AWS account after it, so two projects' `prod` stacks coexist; the stacks of the
project this program shipped as (django-stack) keep every name they have (a renamed IAM role, topic
or parameter is a replaced one)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from config import ConfigError, load_settings
from offline_render.program import StackRender
from ops.errors import UsageError
from ops.live_release import default_parameter
from ops.stack import program_project, resolve_stack
from ops.state import StateStore
from tests import REPO_ROOT
from tests.conftest import prod_config_values, rendered
from userdata.layout import ORIGINAL_PROJECT, PROJECT_TAG

# Input keys that carry a name AWS holds unique in the account (and region): the rest are
# auto-named by Pulumi from the resource's logical name plus a random suffix.
NAME_INPUTS = ("name", "dashboardName", "finalSnapshotIdentifier", "alarmName", "roleName")
# Account-wide names of the original project's prod stack, as deployed stacks carry them.
ORIGINAL_PROD_NAMES = {
    ("aws:sns/topic:Topic", "prod-alerts"),
    ("aws:sns/topic:Topic", "prod-broker-events"),
    ("aws:kms/alias:Alias", "alias/django-stack/prod"),
    ("aws:cloudwatch/logGroup:LogGroup", "/django-stack/prod/web"),
    ("aws:cloudwatch/logGroup:LogGroup", "/django-stack/prod/worker"),
    ("aws:ssm/parameter:Parameter", "/django-stack/prod/release"),
    ("aws:ssm/parameter:Parameter", "/django-stack/prod/redis/auth-token"),
    ("aws:ssm/parameter:Parameter", "/django-stack/prod/django/secret-key"),
    ("aws:cloudwatch/dashboard:Dashboard", "django-stack-prod"),
    ("aws:elasticache/replicationGroup:ReplicationGroup", "prod-redis-final"),
}
# Names that are not the account's to share out: a lifecycle hook's is its group's own, a DNS
# record's is the user's domain (loadBalancer.domain).
NOT_ACCOUNT_NAMES = {"aws:autoscaling/lifecycleHook:LifecycleHook", "aws:route53/record:Record"}


def account_names(render: StackRender) -> set[tuple[str, str]]:
    return {
        (r.type_, str(r.inputs[key]))
        for r in render.resources
        if r.type_ not in NOT_ACCOUNT_NAMES
        for key in NAME_INPUTS
        if isinstance(r.inputs.get(key), str) and key in r.inputs
    }


@pytest.fixture(scope="module")
def shop() -> StackRender:
    """prod as the stack of a project named shop, with its own artifact bucket and a third web
    instance."""
    return rendered("prod", {"app.artifactBucket": "shop-releases", "web.desiredCapacity": 3}, project="shop")


def test_the_program_reads_the_project_pulumi_yaml_names() -> None:
    assert program_project(REPO_ROOT) == ORIGINAL_PROJECT


def test_the_original_projects_stacks_keep_every_name(prod: StackRender) -> None:
    names = account_names(prod)
    assert ORIGINAL_PROD_NAMES <= names
    alarms = {name for type_, name in names if type_ == "aws:cloudwatch/metricAlarm:MetricAlarm"}
    assert alarms and all(name.startswith("prod-") for name in alarms)
    # Logical names (and with them the auto-names of roles, profiles, groups, the load balancer)
    # are the stack's alone, as before: nothing moves, so no alias is needed.
    assert all(r.name == "prod" or r.name.startswith("prod-") for r in prod.resources)
    assert prod.outputs["project"] == ORIGINAL_PROJECT


def test_another_projects_stack_names_everything_after_itself(shop: StackRender, prod: StackRender) -> None:
    assert all(r.name == "shop-prod" or r.name.startswith("shop-prod-") for r in shop.resources)
    names = account_names(shop)
    assert names and all("shop" in name for _, name in names), sorted(n for n in names if "shop" not in n[1])
    # The same resources as the original project's, each under its project-prefixed name.
    assert sorted((r.type_, r.name.removeprefix("shop-")) for r in shop.resources) == sorted(
        (r.type_, r.name) for r in prod.resources
    )
    assert shop.outputs["project"] == "shop"


def test_nothing_of_another_projects_stack_carries_the_original_name(shop: StackRender) -> None:
    everything = json.dumps([r.inputs for r in shop.resources], default=str) + json.dumps(shop.outputs)
    assert "django-stack" not in everything
    for instance in shop.instances:
        assert "django-stack" not in instance.user_data, instance.logical_name
        assert instance.tags[PROJECT_TAG] == "shop"
        assert instance.tags["Name"].startswith("shop-prod-")
    # The machine scripts find the stack's parameters and log groups by the rendered names.
    web = next(i for i in shop.instances if i.role == "web").user_data
    assert "RELEASE_PARAMETER=/shop/prod/release" in web
    assert "AUTH_TOKEN_PARAMETER=/shop/prod/redis/auth-token" in web
    assert '"log_group_name":"/shop/prod/web"' in web


def metric_stacks(render: StackRender) -> set[str]:
    """The Stack dimension's values: what Beat publishes and what the alarms and scaling read."""
    (beat,) = [i for i in render.instances if "worker-beat" in i.logical_name]
    published = set(re.findall(r" STACK=(\S+)", beat.user_data))
    read = set(re.findall(r'"name": "Stack", "value": "([^"]+)"', json.dumps([r.inputs for r in render.resources])))
    read |= set(re.findall(r'"dimensions": {[^}]*"Stack": "([^"]+)"', json.dumps([r.inputs for r in render.resources])))
    return published | read


def test_each_projects_celery_metrics_are_its_own_series(prod: StackRender, shop: StackRender) -> None:
    # One metrics namespace for every stack: the dimension keeps two projects' prod apart.
    assert metric_stacks(prod) == {"prod"}
    assert metric_stacks(shop) == {"shop-prod"}


def test_the_config_is_read_under_the_projects_name(shop: StackRender, prod: StackRender) -> None:
    # An override set under shop: reaches the program (the stack file's keys moved with it).
    assert len([i for i in shop.instances if i.role == "web"]) == 3
    assert len([i for i in prod.instances if i.role == "web"]) == 2


def test_config_errors_name_the_key_in_the_projects_namespace() -> None:
    values = prod_config_values()
    values["web"] = json.dumps({"minSize": -1})
    with pytest.raises(ConfigError) as raised:
        load_settings(values, project="shop", stack="prod", region=None)
    assert str(raised.value).splitlines() == [
        "aws:region: missing; set it with `pulumi config set aws:region eu-west-1`",
        "shop:web.minSize: got -1; expected `int` >= 0",
    ]


@pytest.mark.parametrize(
    ("project", "stack", "message"),
    [
        (
            "Shop_App",
            "prod",
            "Pulumi.yaml name: got 'Shop_App'; use lowercase letters, digits and '-', starting with a letter",
        ),
        (
            "a-long-project-name",
            "staging",
            "Pulumi.yaml name: 'a-long-project-name-staging' (project-stack) is 27 characters; at most 20 fit",
        ),
    ],
)
def test_a_project_name_aws_cannot_carry_is_refused_in_one_line(project: str, stack: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(prod_config_values(), project=project, stack=stack, region="eu-west-1")
    assert len(str(raised.value).splitlines()) == 1
    assert str(raised.value).startswith(message)


# --- the ops tool finds the project's stack by the same names ---------------------------------------


def test_the_ops_tool_takes_the_project_from_the_outputs_else_pulumi_yaml() -> None:
    assert resolve_stack("prod", "eu-west-1", {"project": "shop", "stack": "prod"}).project == "shop"
    assert resolve_stack("prod", "eu-west-1", None).project == ORIGINAL_PROJECT
    with pytest.raises(UsageError, match=r"^--outputs: the 'project' output is 7, not a Pulumi project name"):
        resolve_stack("prod", "eu-west-1", {"project": 7})


def test_the_ops_tools_default_names_are_the_programs(shop: StackRender, tmp_path: Path) -> None:
    assert default_parameter("shop", "prod") == shop.outputs["releaseParameter"] == "/shop/prod/release"
    # The rollout records of two projects' prod stacks are kept apart; the original's stays where it was.
    assert StateStore(tmp_path, ORIGINAL_PROJECT, "prod").path == tmp_path / "prod.json"
    assert StateStore(tmp_path, "shop", "prod").path == tmp_path / "shop-prod.json"
