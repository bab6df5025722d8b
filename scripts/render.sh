#!/usr/bin/env bash
# The README's main command: installs the program's virtualenv (nothing else: no test tools),
# then renders a stack offline (no AWS account, no Pulumi service) into build/<stack>/ (replaced
# whole): per kind of machine its exact user-data and every file it writes, plus resources.md,
# the resources the stack would create. --compare REV_OR_DIR says what changed (docs/render.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh venv
exec .venv/bin/python -m offline_render "$@"
