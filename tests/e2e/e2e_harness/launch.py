#!/usr/bin/python3
"""Runs one unit's process in its own mount and UTS namespace (started by the harness as
`unshare --mount --uts --propagation private python3 launch.py SPEC.json`).

SPEC: {"hostname", "scratch", "binds": [[source, target], ...], "uid", "gid", "cwd", "umask",
"argv", "env"}.
Each bind puts a directory of this test run over a production path (the machine contract's
directories, userdata/layout.py); a target missing on the host is created inside an overlay of
its nearest existing parent, so the host's own directories are never written. Then it drops
to the unit's user and execs.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def make_mount_point(source: Path, target: Path, scratch: Path, overlaid: set[Path]) -> None:
    if target.exists():
        return
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if parent not in overlaid:
        upper, work = scratch / f"upper{len(overlaid)}", scratch / f"work{len(overlaid)}"
        upper.mkdir()
        work.mkdir()
        mount("-t", "overlay", "overlay", "-o", f"lowerdir={parent},upperdir={upper},workdir={work}", str(parent))
        overlaid.add(parent)
    if source.is_file():
        target.touch()
    else:
        target.mkdir(parents=True)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    socket.sethostname(spec["hostname"])
    scratch = Path(spec["scratch"])  # a directory of the test run; a private tmpfs from here on
    mount("-t", "tmpfs", "-o", "mode=0700", "tmpfs", str(scratch))
    overlaid: set[Path] = set()
    for source, target in spec["binds"]:
        make_mount_point(Path(source), Path(target), scratch, overlaid)
    for source, target in spec["binds"]:
        mount("--bind", source, target)
    os.umask(int(spec["umask"], 8))
    os.chdir(spec["cwd"])
    if spec["gid"] is not None:
        os.setgroups([])
        os.setgid(spec["gid"])
    if spec["uid"] is not None:
        os.setuid(spec["uid"])
    # Like systemd (>= 239), a bare command name is looked up in the unit's PATH.
    program = shutil.which(spec["argv"][0], path=spec["env"].get("PATH")) or spec["argv"][0]
    os.execve(program, spec["argv"], spec["env"])


if __name__ == "__main__":
    main()
