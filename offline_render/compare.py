"""What changed against a previous render: a directory the render wrote, or a git revision of this
repository (rendered by this checkout's offline_render from a temporary copy of that revision's
files, `git archive`, so the repository itself is not touched). A short summary: resources added,
changed (with the keys that changed) and removed; then per machine kind (and for the policy and
document files) the files that changed, as unified diffs."""

from __future__ import annotations

import difflib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offline_render.program import PROGRAM_DIR
from offline_render.report import MARKER, RESOURCES_JSON, RenderFile


@dataclass(frozen=True)
class Snapshot:
    """A render as the comparison reads it: resources.json's records and every other file's text."""

    resources: dict[str, dict[str, Any]]
    files: dict[str, str]


@dataclass
class Difference:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # resource -> its changed keys
    files: dict[str, list[str]] = field(default_factory=dict)  # path -> unified diff lines ("" = added/removed)

    def summary(self, against: str) -> str:
        lines = [
            f"compared with {against}: {len(self.added)} resources added, {len(self.changed)} changed, "
            f"{len(self.removed)} removed"
        ]
        lines += [f"  + {key}" for key in self.added]
        lines += [f"  ~ {key}: {', '.join(keys)}" for key, keys in self.changed.items()]
        lines += [f"  - {key}" for key in self.removed]
        by_group: dict[str, list[str]] = {}
        for path in self.files:
            by_group.setdefault(path.split("/", 1)[0], []).append(path)
        lines.append("files: " + ("no changes" if not self.files else f"{len(self.files)} changed"))
        for group, paths in by_group.items():
            lines.append(f"  {group}/: {', '.join(p.split('/', 1)[1] for p in paths)}")
        for diff in self.files.values():
            lines += diff
        return "\n".join(lines) + "\n"


def snapshot_of(files: dict[str, RenderFile]) -> Snapshot:
    resources = json.loads(files[RESOURCES_JSON].content)["resources"]
    return Snapshot(resources, {p: f.content for p, f in files.items() if p not in (MARKER, RESOURCES_JSON)})


def read_snapshot(directory: Path) -> Snapshot:
    recorded = directory / RESOURCES_JSON
    if not recorded.is_file():
        raise SystemExit(
            f"offline_render: --compare {directory}: no {RESOURCES_JSON} (not a render, or one from before "
            "renders wrote it: compare with a git revision instead)"
        )
    files = {
        str(p.relative_to(directory)): p.read_text()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name not in (MARKER, RESOURCES_JSON)
    }
    return Snapshot(json.loads(recorded.read_text())["resources"], files)


def compare(old: Snapshot, new: Snapshot) -> Difference:
    difference = Difference(
        added=sorted(set(new.resources) - set(old.resources)),
        removed=sorted(set(old.resources) - set(new.resources)),
    )
    for key in sorted(set(old.resources) & set(new.resources)):
        before, after = old.resources[key], new.resources[key]
        keys = sorted(
            k
            for k in before["inputs"].keys() | after["inputs"].keys()
            if before["inputs"].get(k, None) != after["inputs"].get(k, None)
        )
        keys += [option for option in ("parent", "protected") if before.get(option) != after.get(option)]
        if keys:
            difference.changed[key] = keys
    for path in sorted(old.files.keys() | new.files.keys()):
        before_text, after_text = old.files.get(path), new.files.get(path)
        if before_text == after_text:
            continue
        difference.files[path] = list(
            difflib.unified_diff(
                (before_text or "").splitlines(),
                (after_text or "").splitlines(),
                f"a/{path}" if before_text is not None else "/dev/null",
                f"b/{path}" if after_text is not None else "/dev/null",
                lineterm="",
            )
        )
    return difference


class RevisionRender:
    """A git revision rendered in the background (another process) while this one renders the
    working tree: `start`, then `snapshot` waits for it."""

    def __init__(self, revision: str, stack: str) -> None:
        self.revision, self.stack = revision, stack
        self.scratch = Path(tempfile.mkdtemp(prefix="offline-render-compare-"))
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        source, tar = self.scratch / "program", self.scratch / "program.tar"
        archive = subprocess.run(
            ["git", "archive", "--format=tar", f"--output={tar}", self.revision],
            cwd=PROGRAM_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if archive.returncode != 0:
            self.close()
            reason = (archive.stderr.strip().splitlines() or ["git archive failed"])[-1]
            raise SystemExit(
                f"offline_render: --compare {self.revision}: not a directory, nor a git revision ({reason})"
            )
        source.mkdir()
        subprocess.run(["tar", "-xf", str(tar), "-C", str(source)], check=True)
        command = [sys.executable, "-m", "offline_render", "--program", str(source), "--stack", self.stack]
        # A revision from before program.py's build(settings) ran __main__.py as a script: its own
        # offline_render knows how (from its directory, so it imports its own modules).
        own_renderer = not (source / "program.py").is_file()
        if own_renderer:
            command = [sys.executable, "-m", "offline_render", "--stack", self.stack]
        self.process = subprocess.Popen(
            [*command, "--out", str(self.scratch / "out")],
            cwd=source if own_renderer else PROGRAM_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def snapshot(self) -> Snapshot:
        assert self.process is not None
        printed, _ = self.process.communicate()
        if self.process.returncode != 0:
            raise SystemExit(f"offline_render: --compare {self.revision}: its render failed:\n{printed.strip()}")
        return read_snapshot(self.scratch / "out")

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)
