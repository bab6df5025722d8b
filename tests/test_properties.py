"""Property tests for the pure planners: each rule holds for every input its config allows, not
only for the stacks the other tests render. Hypothesis draws the inputs; the example counts are
kept small so the unit lane stays fast (a failure prints the smallest input that breaks a rule)."""

from __future__ import annotations

import json
import re
import subprocess
from ipaddress import IPv4Network, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import release_name
from components.planning import TIER_BLOCKS, plan_subnets
from components.signals import CeleryMetrics, LoadBalancerIds, Thresholds, WatchTargets, dashboard_body, plan
from userdata.render import render_env

FEW = settings(max_examples=60, deadline=None, database=None)

# --- subnet planning ---------------------------------------------------------------------------

vpcs = st.builds(
    lambda address, prefix: str(ip_network((address, prefix), strict=False)),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=8, max_value=24),
)
zone_counts = st.integers(min_value=1, max_value=TIER_BLOCKS)


@FEW
@given(vpcs, zone_counts)
def test_subnets_are_distinct_inside_the_vpc_and_a_sixteenth_of_it(vpc_cidr: str, zones: int) -> None:
    plan_ = plan_subnets(vpc_cidr, zones)
    vpc = IPv4Network(vpc_cidr)
    subnets = [IPv4Network(cidr) for cidr in plan_.private + plan_.public]
    assert len(plan_.private) == len(plan_.public) == zones
    assert all(subnet.subnet_of(vpc) and subnet.prefixlen == vpc.prefixlen + 4 for subnet in subnets)
    assert not any(a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1 :])
    # Private subnets in the first half, public ones in the second.
    half = list(vpc.subnets(prefixlen_diff=1))
    assert all(IPv4Network(c).subnet_of(half[0]) for c in plan_.private)
    assert all(IPv4Network(c).subnet_of(half[1]) for c in plan_.public)


@FEW
@given(vpcs, zone_counts, zone_counts)
def test_a_zone_keeps_its_subnets_whatever_the_zone_count(vpc_cidr: str, fewer: int, more: int) -> None:
    fewer, more = sorted((fewer, more))
    small, large = plan_subnets(vpc_cidr, fewer), plan_subnets(vpc_cidr, more)
    assert large.private[:fewer] == small.private and large.public[:fewer] == small.public


@FEW
@given(vpcs, st.integers().filter(lambda n: not 1 <= n <= TIER_BLOCKS))
def test_a_zone_count_out_of_range_is_refused(vpc_cidr: str, zones: int) -> None:
    with pytest.raises(ValueError, match="zone_count"):
        plan_subnets(vpc_cidr, zones)


# --- env files ---------------------------------------------------------------------------------

SPECIAL = list('$`\\" ;&|*?~#(){}[]<>!%\t')
env_keys = st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,30}\Z")
# Anything printable but the two characters render_env refuses (and NUL, which no file holds).
env_values = st.one_of(
    st.integers(min_value=0, max_value=10**9),
    st.text(st.characters(blacklist_characters="'\n\r\x00", blacklist_categories=("Cs", "Cc")), max_size=40),
    # Characters a value may carry bare around one that a shell or systemd would expand, split or
    # escape: the cases where the quoting is decided.
    st.builds(
        "".join,
        st.tuples(bare := st.text(st.sampled_from("aZ09_./:@,+=-"), max_size=6), st.sampled_from(SPECIAL), bare),
    ),
)


def read_by_shell(text: str, keys: list[str]) -> dict[str, str]:
    """What `set -a; . file` gives a POSIX shell (the units' ExecStart lines run through one)."""
    script = 'set -a; . /dev/stdin; for k in "$@"; do printf "%s\\0" "$(eval "printf %s \\"\\${$k}\\"")"; done'
    out = subprocess.run(["sh", "-c", script, "sh", *keys], input=text, capture_output=True, text=True, check=True)
    return dict(zip(keys, out.stdout.split("\0")[:-1]))


@settings(max_examples=25, deadline=None, database=None)
@given(st.dictionaries(env_keys, env_values, min_size=1, max_size=24))
def test_an_env_file_gives_the_shell_exactly_its_values(values: dict[str, str | int]) -> None:
    text = render_env(values)
    assert text.count("\n") == len(values)
    assert read_by_shell(text, list(values)) == {key: str(value) for key, value in values.items()}


@FEW
@given(env_keys, st.text(max_size=10), st.sampled_from(["'", "\n"]), st.text(max_size=10))
def test_a_value_with_a_quote_or_newline_is_refused(key: str, before: str, bad: str, after: str) -> None:
    with pytest.raises(ValueError, match=re.escape(key)):
        render_env({key: before + bad + after})


# --- the release-name rule ---------------------------------------------------------------------

release_names = st.from_regex(rf"\A{release_name.PATTERN}\Z")


@FEW
@given(release_names)
def test_a_release_name_is_one_safe_path_segment(name: str) -> None:
    assert release_name.is_release_name(name) and release_name.main([name]) == 0
    assert "/" not in name and name not in (".", "..") and not name.startswith(("-", "."))
    assert len(name) <= 64


@FEW
@given(st.text(max_size=70).filter(lambda s: not re.fullmatch(release_name.PATTERN, s)))
def test_anything_else_is_not_a_release_name(text: str) -> None:
    assert not release_name.is_release_name(text)


# --- the signal plan ---------------------------------------------------------------------------

queue_names = st.lists(st.from_regex(r"\A[a-z][a-z0-9_-]{0,31}\Z"), min_size=1, max_size=12, unique=True)


@st.composite
def watch_targets(draw: st.DrawFn) -> WatchTargets[str]:
    queues = draw(queue_names)
    beat, balancer, scaling = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    nodes = draw(st.integers(min_value=1, max_value=6))
    groups = {"web": "g-web", "worker": "g-worker", **({"worker-beat": "g-beat"} if beat else {})}
    return WatchTargets(
        cache_node_ids=[f"rg-{n:03d}" for n in range(1, nodes + 1)],
        load_balancer=LoadBalancerIds("app/a/1", "targetgroup/t/2") if balancer else None,
        groups=groups,
        celery=CeleryMetrics(
            "DjangoStack/Celery", "QueueBacklog", "BeatHeartbeat", "Stack", "Queue", "prod", tuple(queues)
        ),
        beat=beat,
        launch_grace_seconds=300,
        thresholds=Thresholds(75, 80, 1000, 10, 5, 2, 100, 10),
        scaling_group="worker" if scaling else None,
        target_backlog_per_instance=20 if scaling else None,
    )


@FEW
@given(watch_targets())
def test_every_signal_is_unique_its_math_names_its_own_metrics_and_each_queue_pages(
    targets: WatchTargets[str],
) -> None:
    signals = plan(targets)
    keys = [signal.key for signal in signals]
    assert len(keys) == len(set(keys))
    # CloudWatch alarm names are <stack>-<key>, at most 255 characters.
    assert all(len(f"{targets.celery.stack}-{key}") <= 255 for key in keys)
    for signal in signals:
        ids = [metric.query_id for metric in signal.query.metrics]
        assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z][a-z0-9_]*", i) for i in ids), signal.key
        if signal.query.expression is not None:
            assert set(re.findall(r"\b[a-z][a-z0-9_]*\b", signal.query.expression)) == set(ids), signal.key
        if signal.alarm is not None:
            assert 1 <= signal.alarm.periods <= 1440, signal.key
    backlog_alarms = {key for key in keys if key.startswith("queue-backlog-")}
    assert backlog_alarms == {f"queue-backlog-{queue}" for queue in targets.celery.queues}
    lag = [key for key in keys if "replication-lag" in key]
    assert len(lag) == (len(targets.cache_node_ids) if len(targets.cache_node_ids) > 1 else 0)
    assert ("beat-heartbeat" in keys) == targets.beat


@FEW
@given(watch_targets())
def test_the_dashboard_has_a_line_for_every_signal(targets: WatchTargets[str]) -> None:
    signals = plan(targets)
    body = json.loads(dashboard_body(signals, "eu-west-1"))
    panels = {widget["properties"]["title"] for widget in body["widgets"]}
    assert panels == {signal.panel for signal in signals}
    assert all(widget["properties"]["metrics"] for widget in body["widgets"])
