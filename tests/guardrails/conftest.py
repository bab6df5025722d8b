"""The policy pack's modules import each other by bare name, as when the CLI runs `python policy/`."""

from __future__ import annotations

import sys

from tests import REPO_ROOT

POLICY_DIR = REPO_ROOT / "policy"
if str(POLICY_DIR) not in sys.path:
    sys.path.insert(0, str(POLICY_DIR))
