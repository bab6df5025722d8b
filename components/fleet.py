"""The EC2 instances: web (gunicorn) and worker (Celery), each configured by its user-data.

Celery Beat runs on exactly one worker. That worker is its own resource (`<name>-worker-beat`),
not an index into the worker list, so scaling or replacing the other workers never moves or
duplicates Beat, and its replacement deletes the old instance first so two Beats never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from settings import Settings
from userdata.render import Machine, Role, user_data_base64

# Debian's own AWS account: the official Debian 12 AMIs. Debian 12 is what this repository's VM
# tests boot, so the OS, cloud-init (22.4) and systemd (252) tested here are the ones deployed.
DEBIAN_AMI_OWNER = "136693071363"
BEAT_TAG = "celery-beat"


@dataclass(frozen=True)
class FleetArgs:
    settings: Settings
    subnet_ids: list[pulumi.Output[str]]
    web_security_group_id: pulumi.Input[str]
    worker_security_group_id: pulumi.Input[str]
    instance_profile_name: pulumi.Input[str]
    redis_host: pulumi.Output[str]
    redis_port: pulumi.Output[int]
    tags: dict[str, str]


class Fleet(pulumi.ComponentResource):
    web_instance_ids: list[pulumi.Output[str]]
    worker_instance_ids: list[pulumi.Output[str]]
    beat_instance_id: pulumi.Output[str] | None

    def __init__(self, name: str, args: FleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("djangostack:fleet:Fleet", name, None, opts)
        self._args = args
        self._name = name
        settings = args.settings
        self._ami = self._image(settings)

        self.web_instance_ids = [self._instance("web", index).id for index in range(settings.web.count)]
        beat = self._instance("worker", "beat", runs_beat=True) if settings.worker.beat else None
        plain_workers = settings.worker.count - (1 if beat else 0)
        first = 1 if beat else 0
        self.worker_instance_ids = ([beat.id] if beat else []) + [
            self._instance("worker", index).id for index in range(first, first + plain_workers)
        ]
        self.beat_instance_id = beat.id if beat else None
        self.register_outputs(
            {
                "webInstanceIds": self.web_instance_ids,
                "workerInstanceIds": self.worker_instance_ids,
                "beatInstanceId": self.beat_instance_id,
            }
        )

    def _image(self, settings: Settings) -> pulumi.Input[str]:
        if settings.instances.ami_id:
            return settings.instances.ami_id
        arch = "amd64" if settings.instances.architecture == "x86_64" else "arm64"
        return aws.ec2.get_ami_output(
            most_recent=True,
            owners=[DEBIAN_AMI_OWNER],
            filters=[
                {"name": "name", "values": [f"debian-12-{arch}-*"]},
                {"name": "architecture", "values": [settings.instances.architecture]},
                {"name": "virtualization-type", "values": ["hvm"]},
            ],
            opts=pulumi.InvokeOptions(parent=self),
        ).id

    def _instance(self, role: Role, index: int | str, runs_beat: bool = False) -> aws.ec2.Instance:
        args, settings = self._args, self._args.settings
        logical = f"{role}-{index}"
        machine_name = f"{settings.stack}-{logical}"
        role_settings = settings.web if role == "web" else settings.worker
        subnet = args.subnet_ids[(index if isinstance(index, int) else 0) % len(args.subnet_ids)]
        tags = {**args.tags, "Name": machine_name, "Role": role}
        if runs_beat:
            tags[BEAT_TAG] = "true"
        rendered = pulumi.Output.all(args.redis_host, args.redis_port).apply(
            lambda endpoint: user_data_base64(
                Machine(settings, role, runs_beat, redis_host=endpoint[0], redis_port=int(endpoint[1]))
            )
        )
        return aws.ec2.Instance(
            f"{self._name}-{logical}",
            ami=self._ami,
            instance_type=role_settings.instance_type,
            subnet_id=subnet,
            vpc_security_group_ids=[args.web_security_group_id if role == "web" else args.worker_security_group_id],
            iam_instance_profile=args.instance_profile_name,
            associate_public_ip_address=False,
            # IMDSv2 only, and a hop limit of 1 so nothing forwarded from the host can reach it.
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            root_block_device={
                "encrypted": True,
                "volume_type": "gp3",
                "volume_size": settings.instances.root_volume_gb,
                "delete_on_termination": True,
            },
            user_data_base64=rendered,
            # cloud-init applies user-data once per instance: a changed user-data only takes
            # effect on a new instance, so a change replaces the instance on purpose.
            user_data_replace_on_change=True,
            tags=tags,
            volume_tags=tags,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=runs_beat),
        )
