# ops refresh secrets ({{ role }})
# shellcheck disable=SC2086 # (the whole script) $units lists unit names: split on purpose
{{ helpers }}set -e
{{ restarted_units }}units=${units# }
if ! systemctl reload {{ secrets_unit }}; then
  echo "fetching the secrets from Parameter Store failed (journalctl -u {{ secrets_unit }}); nothing was restarted: $units still run on the token they had" >&2
  exit 1
fi
systemctl restart $units
echo "secrets fetched again; restarted: $units"
