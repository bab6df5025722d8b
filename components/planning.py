"""Pure planning for the resource code: no Pulumi, no AWS, so each rule is tested on its own."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network

# The VPC is cut into 2**4 = 16 equal blocks (a /16 gives /20s of 4,096 addresses). The first
# half holds the private subnets, the second half the public ones (which only carry NAT
# gateways), both counted from the start of their half: either tier can grow to 8 zones
# without renumbering the other, and a given zone keeps its subnets whatever the zone count.
SUBNET_BITS = 4
BLOCKS = 2**SUBNET_BITS
TIER_BLOCKS = BLOCKS // 2


@dataclass(frozen=True)
class SubnetPlan:
    """One private and one public CIDR per availability zone, in zone order."""

    private: list[str]
    public: list[str]


def plan_subnets(vpc_cidr: str, zone_count: int) -> SubnetPlan:
    vpc = ip_network(vpc_cidr)
    if not isinstance(vpc, IPv4Network) or vpc.prefixlen > 32 - 4 - SUBNET_BITS:
        raise ValueError(f"vpc_cidr: {vpc_cidr!r}; needs an IPv4 network of /{28 - SUBNET_BITS} or larger")
    if not 1 <= zone_count <= TIER_BLOCKS:
        raise ValueError(f"zone_count: {zone_count}; allowed 1-{TIER_BLOCKS}")
    blocks = list(vpc.subnets(prefixlen_diff=SUBNET_BITS))
    return SubnetPlan(
        private=[str(block) for block in blocks[:zone_count]],
        public=[str(block) for block in blocks[TIER_BLOCKS : TIER_BLOCKS + zone_count]],
    )
