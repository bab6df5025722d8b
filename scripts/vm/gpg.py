"""gpg with a home of its own, for keys that live as long as one use: the VM image build signs its
stand-in agent packages with a key made for that build (scripts/vm/image.py), and the agent
signature tests make signers of their own (tests/e2e/test_agent_signature.py)."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def gpg(home: Path, *args: str, input: str | None = None) -> str:
    """gpg's stdout; no prompt (keys made without a passphrase); a failure raises."""
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", "", *args],
        capture_output=True,
        text=True,
        check=True,
        input=input,
    ).stdout


@contextmanager
def throwaway_home(prefix: str) -> Iterator[Path]:
    """A GNUPGHOME (0700) directly in the temp dir (a test run's own: scripts/test.sh), removed
    after, with the gpg-agent that gpg started for it. The agent's sockets live in the home, and
    a Unix socket's path has at most 107 bytes: pytest's per-test trees are too deep for it."""
    with tempfile.TemporaryDirectory(prefix=prefix) as home:
        try:
            yield Path(home)
        finally:
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)
