"""The EC2 instances: web (gunicorn) and worker (Celery), each configured by its user-data.

Celery Beat runs on exactly one worker. That worker is its own resource (`<name>-worker-beat`),
not an index into the worker list, so scaling or replacing the other workers never moves or
duplicates Beat, and its replacement deletes the old instance first so two Beats never overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

# Debian's own AWS account: the official Debian 12 AMIs. Debian 12 is what this repository's VM
# tests boot, so the OS, cloud-init (22.4) and systemd (252) tested here are the ones deployed.
DEBIAN_AMI_OWNER = "136693071363"
DEBIAN_ARCHITECTURES = {"x86_64": "amd64", "arm64": "arm64"}


@dataclass(frozen=True)
class FleetArgs:
    """Three kinds of machine, each with its own rendered user-data (gzip+base64) and tags:
    web, worker, and the one worker that runs Beat (none when beat_user_data is None).
    worker_count includes the Beat worker."""

    web_count: int
    web_instance_type: str
    web_security_group_id: pulumi.Input[str]
    web_user_data: pulumi.Input[str]
    web_tags: dict[str, str]
    worker_count: int
    worker_instance_type: str
    worker_security_group_id: pulumi.Input[str]
    worker_user_data: pulumi.Input[str]
    worker_tags: dict[str, str]
    beat_user_data: pulumi.Input[str] | None
    beat_tags: dict[str, str]
    # An image to pin; None looks up the latest Debian 12 for the architecture.
    ami_id: str | None
    architecture: str
    root_volume_gb: int
    # The stack key: the root volumes are encrypted with it, not the account's aws/ebs key.
    kms_key_arn: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    instance_profile_name: pulumi.Input[str]

    def __post_init__(self) -> None:
        if self.architecture not in DEBIAN_ARCHITECTURES:
            raise ValueError(f"architecture: {self.architecture!r}; allowed: {', '.join(DEBIAN_ARCHITECTURES)}")
        if not self.subnet_ids:
            raise ValueError("subnet_ids: empty; needs at least one subnet")


class Fleet(pulumi.ComponentResource):
    web_instance_ids: list[pulumi.Output[str]]
    worker_instance_ids: list[pulumi.Output[str]]
    beat_instance_id: pulumi.Output[str] | None

    def __init__(self, name: str, args: FleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:fleet:Fleet", name, None, opts)
        self._args = args
        self._name = name
        self._ami = self._image()

        self.web_instance_ids = [
            self._instance(f"web-{index}", index, "web", args.web_user_data, args.web_tags).id
            for index in range(args.web_count)
        ]
        beat = None
        if args.beat_user_data is not None:
            beat = self._instance("worker-beat", 0, "worker", args.beat_user_data, args.beat_tags, runs_beat=True)
        first = 1 if beat else 0
        self.worker_instance_ids = ([beat.id] if beat else []) + [
            self._instance(f"worker-{index}", index, "worker", args.worker_user_data, args.worker_tags).id
            for index in range(first, args.worker_count)
        ]
        self.beat_instance_id = beat.id if beat else None
        self.register_outputs(
            {
                "webInstanceIds": self.web_instance_ids,
                "workerInstanceIds": self.worker_instance_ids,
                "beatInstanceId": self.beat_instance_id,
            }
        )

    def _image(self) -> pulumi.Input[str]:
        args = self._args
        if args.ami_id:
            return args.ami_id
        return aws.ec2.get_ami_output(
            most_recent=True,
            owners=[DEBIAN_AMI_OWNER],
            filters=[
                {"name": "name", "values": [f"debian-12-{DEBIAN_ARCHITECTURES[args.architecture]}-*"]},
                {"name": "architecture", "values": [args.architecture]},
                {"name": "virtualization-type", "values": ["hvm"]},
            ],
            opts=pulumi.InvokeOptions(parent=self),
        ).id

    def _instance(
        self,
        logical: str,
        index: int,
        role: Literal["web", "worker"],
        user_data: pulumi.Input[str],
        kind_tags: dict[str, str],
        runs_beat: bool = False,
    ) -> aws.ec2.Instance:
        args = self._args
        web = role == "web"
        resource_name = f"{self._name}-{logical}"
        tags = {**kind_tags, "Name": resource_name}
        return aws.ec2.Instance(
            resource_name,
            ami=self._ami,
            instance_type=args.web_instance_type if web else args.worker_instance_type,
            subnet_id=args.subnet_ids[index % len(args.subnet_ids)],
            vpc_security_group_ids=[args.web_security_group_id if web else args.worker_security_group_id],
            iam_instance_profile=args.instance_profile_name,
            associate_public_ip_address=False,
            # IMDSv2 only, and a hop limit of 1 so nothing forwarded from the host can reach it.
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            root_block_device={
                "encrypted": True,
                "kms_key_id": args.kms_key_arn,
                "volume_type": "gp3",
                "volume_size": args.root_volume_gb,
                "delete_on_termination": True,
            },
            user_data_base64=user_data,
            # cloud-init applies user-data once per instance: a changed user-data only takes
            # effect on a new instance, so a change replaces the instance on purpose.
            user_data_replace_on_change=True,
            tags=tags,
            volume_tags=tags,
            # Beat's replacement deletes the old instance first: two Beats never overlap.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=runs_beat),
        )
