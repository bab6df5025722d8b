# ops stop timeouts ({{ role }})
{{ helpers }}set -e
{{ restarted_units }}for u in $units; do
  printf '%s %s\n' "$u" "$(sed -n 's/^TimeoutStopSec=//p' {{ unit_dir }}/"$u")"
done
