"""Subnet planning, as properties over many VPCs and zone counts (pure, no Pulumi)."""

from __future__ import annotations

import random
from ipaddress import ip_network
from itertools import combinations

import pytest

from components.planning import SUBNET_BITS, TIER_BLOCKS, plan_subnets


def vpcs() -> list[str]:
    rng = random.Random(10)
    found = []
    for prefix in range(16, 25):
        for _ in range(4):
            address = rng.getrandbits(32) & ~((1 << (32 - prefix)) - 1)
            found.append(str(ip_network((address, prefix))))
    return found


CASES = [(vpc, zones) for vpc in vpcs() for zones in range(1, TIER_BLOCKS + 1)]


@pytest.mark.parametrize(("vpc", "zones"), CASES[::7] + [("10.40.0.0/16", 2), ("10.40.0.0/20", 6)])
def test_one_private_and_one_public_subnet_per_zone_inside_the_vpc_never_overlapping(vpc, zones):
    plan = plan_subnets(vpc, zones)
    assert len(plan.private) == len(plan.public) == zones
    subnets = [ip_network(cidr) for cidr in plan.private + plan.public]
    assert all(subnet.subnet_of(ip_network(vpc)) for subnet in subnets)
    assert all(not a.overlaps(b) for a, b in combinations(subnets, 2))
    assert {subnet.prefixlen for subnet in subnets} == {ip_network(vpc).prefixlen + SUBNET_BITS}


@pytest.mark.parametrize("vpc", vpcs()[::5])
def test_adding_a_zone_keeps_every_existing_subnet(vpc):
    # A zone's subnets never move when the zone count grows (moving one replaces it).
    for zones in range(1, TIER_BLOCKS):
        smaller, larger = plan_subnets(vpc, zones), plan_subnets(vpc, zones + 1)
        assert larger.private[:zones] == smaller.private and larger.public[:zones] == smaller.public


def test_private_subnets_fill_the_first_half_and_public_the_second():
    plan = plan_subnets("10.40.0.0/16", 2)
    assert plan.private == ["10.40.0.0/20", "10.40.16.0/20"]
    assert plan.public == ["10.40.128.0/20", "10.40.144.0/20"]


@pytest.mark.parametrize(
    ("vpc", "zones", "message"),
    [
        ("10.40.0.0/25", 2, "vpc_cidr: '10.40.0.0/25'; needs an IPv4 network of /24 or larger"),
        ("10.40.0.0/16", 0, "zone_count: 0; allowed 1-8"),
        ("10.40.0.0/16", 9, "zone_count: 9; allowed 1-8"),
        ("fd00::/48", 2, "vpc_cidr: 'fd00::/48'; needs an IPv4 network"),
    ],
)
def test_a_plan_that_cannot_fit_is_refused_by_name(vpc, zones, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_subnets(vpc, zones)
