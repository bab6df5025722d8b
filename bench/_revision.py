"""What the A/B benches share (not a bench: tests/guardrails/test_benches.py skips bench/_*.py):
a git revision's files to run beside this tree's, and the order the two sides take turns in."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def revision_tree(rev: str, scratch: Path, prog: str) -> tuple[Path, str]:
    """REV's files (`git archive`), extracted into scratch/revision; and its commit."""
    commit = commit_of(rev, prog)
    tree = scratch / "revision"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree, commit


def revision_checkout(rev: str, scratch: Path, prog: str) -> tuple[Path, str]:
    """REV checked out in scratch/revision, a clone sharing this repository's objects (its tests
    run git there), with this checkout's venv as its .venv (its scripts run .venv/bin/python);
    and its commit. This repository is left as it was."""
    commit = commit_of(rev, prog)
    tree = scratch / "revision"
    subprocess.run(["git", "clone", "--quiet", "--shared", "--no-checkout", str(REPO), str(tree)], check=True)
    subprocess.run(["git", "checkout", "--quiet", "--detach", commit], cwd=tree, check=True)
    (tree / ".venv").symlink_to(REPO / ".venv")
    return tree, commit


def commit_of(rev: str, prog: str) -> str:
    commit = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if commit is None:
        raise SystemExit(f"{prog}: --against {rev!r} names no commit of this repository")
    return commit


def git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def order(pairs: int) -> list[int]:
    """0 for A, 1 for B: A B, B A, A B, ... (ABBA), so load that drifts weighs on both alike."""
    return [side for pair in range(pairs) for side in ((0, 1) if pair % 2 == 0 else (1, 0))]
