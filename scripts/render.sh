#!/usr/bin/env bash
# The README's main command: installs the program's virtualenv (nothing else: no test tools),
# then renders a stack offline (no AWS account, no Pulumi service) into build/<stack>/: per
# instance its exact user-data and every file it writes, plus a table of the resources the stack
# would create.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh venv
exec .venv/bin/python -m offline_render "$@"
