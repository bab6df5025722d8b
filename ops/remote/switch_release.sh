# ops switch release ({{ role }})
# shellcheck disable=SC2086 # (the whole script) $units lists unit names: split on purpose
{{ helpers }}set -e
{{ system_python }} {{ release_bin }} activate {{ release }}
{{ restarted_units }}systemctl restart $units
echo "$({{ system_python }} {{ release_bin }} current) is active; units restarted"
