"""SIGINT, SIGTERM and SIGHUP during a command: the first one stops the command where it is, as
a failed step would (an Interrupted error), so the command's own cleanup runs: Auto Scaling
processes resumed, Beat resumed, web instances back in service, the state report printed.
Further signals are ignored until the command has finished cleaning up: a second Ctrl-C must
not cut the cleanup short and leave the stack frozen."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from ops.errors import OpsError

STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(OpsError):
    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a command killed by the signal


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block the first stopping signal raises Interrupted; later ones are ignored."""

    def stop(signum: int, frame: FrameType | None) -> None:
        for each in STOPPING_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {each: signal.signal(each, stop) for each in STOPPING_SIGNALS}
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
