"""Running the tool the way an operator does (`main(argv)`), with the SSM client wrapped."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pytest

import ops.cli
from ops.cli import main
from ops.executor import SsmExecutor
from tests.ops.conftest import Responder, ScriptedSsm


@dataclass
class Run:
    code: int
    out: str
    err: str
    ssm: ScriptedSsm

    def purposes(self) -> list[tuple[str, str]]:
        return [(sent.instance_id, sent.purpose) for sent in self.ssm.sent]


def run_ops(
    argv: list[str],
    responder: Responder,
    ssm_client: Any,
    capsys: pytest.CaptureFixture[str],
    ssm_through_sdk: bool = False,
    **executor_options: Any,
) -> Run:
    scripted = ScriptedSsm(ssm_client, responder, through_sdk=ssm_through_sdk)
    code = main(argv, executor=SsmExecutor(scripted, poll_interval=0.01, **executor_options))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err, scripted)


@dataclass
class VirtualClock:
    """Time for the tool's waits that passes only when it sleeps: a 1 s timeout runs out after
    the same polls as in real time, without the worker sitting idle for the second."""

    now: float = 0.0
    slept: float = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def waits_on(clock: VirtualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's drill, rollouts and database rotation (what waits for a timeout) on `clock`."""
    for name in ("FailoverDrill", "Rollout", "DatabasePasswordRotation"):
        monkeypatch.setattr(
            ops.cli, name, functools.partial(getattr(ops.cli, name), clock=clock.monotonic, sleep=clock.sleep)
        )
