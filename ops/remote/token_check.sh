# ops token check ({{ role }})
# shellcheck disable=SC2086 # (the whole script) $units lists unit names: split on purpose
{{ helpers }}set -e
{{ restarted_units }}{{ beat }}set -a
. {{ secrets_source_env }}
set +a
{{ system_python }} -c {{ token_check_py }} $units
