"""The one release-name rule, shared by the stack config (config/), the ops tool and
scripts/build-release.sh. A release name becomes a directory on every instance, an S3 key and
an argument in printed shell hints, so all three must agree on it.

No third-party imports: the build script runs this file with Debian's own python3.

    python3 release_name.py NAME     exit 0 when NAME is a release name, else 2 and one line
"""

from __future__ import annotations

import re
import sys

PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
RULE = "up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. \"2026.11.25-1\""


def is_release_name(value: object) -> bool:
    # fullmatch: `$` would accept a trailing newline.
    return isinstance(value, str) and re.fullmatch(PATTERN, value) is not None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: release_name.py NAME", file=sys.stderr)
        return 2
    if not is_release_name(argv[0]):
        print(f"release {argv[0]!r} is invalid; use {RULE}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
