units=""
{{ worker_units }}[ -n "$units" ] || { echo 'no {{ worker_env_prefix }}*{{ worker_env_suffix }}: no worker units here'; exit 1; }
