"""Where a stack's instances fetch releases from, and its region, from its stack file alone:

    python -m offline_render.release_location STACK

prints `region=<region>` and `location=s3://<bucket>/<prefix>` (GitHub's step-output format,
for .github/workflows/ship-release.yml). The values pass through the program's own settings, so
the defaults and checks are `pulumi up`'s. Exit 2 on a config problem or a stack whose instances
carry the release in their image (app.source: ami).
"""

from __future__ import annotations

import argparse
import json
import sys

from config import ConfigError, load_settings
from offline_render.program import stack_file_config
from ops.stack import program_project


def release_location(stack: str) -> tuple[str, str]:
    """(region, "s3://bucket/prefix") of the stack's release artifacts."""
    config, project = stack_file_config(stack), program_project()
    prefix = f"{project}:"
    raw = {key.removeprefix(prefix): json.dumps(value) for key, value in config.items() if key.startswith(prefix)}
    settings = load_settings(raw, stack=stack, region=config.get("aws:region"), project=project)
    if settings.app.source != "s3":
        raise ConfigError(f"{project}:app.source: {settings.app.source}; the stack's image carries its release")
    return settings.region, f"s3://{settings.app.artifact_bucket}/{settings.app.artifact_prefix}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m offline_render.release_location", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("stack", help="stack name: a Pulumi.<stack>.yaml must exist")
    stack = parser.parse_args(argv).stack
    try:
        region, location = release_location(stack)
    except ConfigError as error:
        print(f"release_location ({stack}): {error}", file=sys.stderr)
        return 2
    print(f"region={region}\nlocation={location}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
