"""Running the tool the way an operator does (`main(argv)`), with the SSM client wrapped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

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
    argv: list[str], responder: Responder, ssm_client: Any, capsys: pytest.CaptureFixture[str], **executor_options: Any
) -> Run:
    scripted = ScriptedSsm(ssm_client, responder)
    code = main(argv, executor=SsmExecutor(scripted, poll_interval=0.01, **executor_options))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err, scripted)
