check_env_file() {
  for f in {{ app_env }} {{ version_env }} {{ secrets_env }}; do
    [ -r "$f" ] || { echo "$f is missing"; return 1; }
  done
  load_env
  for v in {{ required_app_variables }}; do
    eval "[ -n \"\${$v:-}\" ]" || { echo "$v is not set"; return 1; }
  done
  echo "env files present"
}
check_services() {
  units="{{ oneshot_units }}"
  if [ "$ROLE" = {{ web_role }} ]; then units="$units {{ gunicorn_unit }}"; fi
  {{ worker_units }}  if [ "$EXPECT_BEAT" = yes ]; then units="$units {{ beat_unit }}"; fi
  bad=""
  for u in $units; do
    state=$(systemctl is-active "$u")
    [ "$state" = active ] || bad="$bad $u=$state"
  done
  [ -z "$bad" ] || { echo "not active:$bad"; return 1; }
  echo "active: $units"
}
check_redis_ping() {
  load_env
  rest=${CELERY_BROKER_URL#rediss://}
  [ "$rest" != "$CELERY_BROKER_URL" ] || { echo "CELERY_BROKER_URL is not a rediss:// URL"; return 1; }
  auth=${rest%%@*}
  REDISCLI_AUTH=${auth#:}
  export REDISCLI_AUTH
  hostport=${rest#*@}
  hostport=${hostport%%/*}
  host=${hostport%:*}
  port=${hostport##*:}
  # The URL goes through stdin, never argv, because it holds the token.
  ca=$(printf '%s' "$CELERY_BROKER_URL" | {{ system_python }} -c {{ broker_ca_py }})
  reply=$(timeout "$CHECK_TIMEOUT" redis-cli --tls ${ca:+--cacert "$ca"} -h "$host" -p "$port" PING 2>&1)
  [ "$reply" = PONG ] || { echo "redis $host:$port: $reply"; return 1; }
  echo "PONG from $host:$port over TLS with AUTH"
}
check_celery_ping() {
  load_env
  nodes=""
  for q in $(worker_queues); do nodes="$nodes $q@$(uname -n)"; done
  [ -n "$nodes" ] || { echo "no {{ worker_env_prefix }}*{{ worker_env_suffix }}: no worker units here"; return 1; }
  destination=$(printf '%s' "${nodes# }" | tr ' ' ,)
  # A broadcast reaches only workers already listening: a worker just restarted misses a ping
  # sent before it is ready, so ask again until every node answered or CHECK_TIMEOUT ran out.
  deadline=$(( $(date +%s) + CHECK_TIMEOUT ))
  while :; do
    reply=$(cd {{ app_src }} && as_app {{ app_bin }}/celery --app "$CELERY_APP" \
      inspect ping --json --timeout 2 --destination "$destination" 2>&1)
    missing=""
    for n in $nodes; do
      case "$reply" in *"\"$n\""*) ;; *) missing="$missing $n" ;; esac
    done
    [ -n "$missing" ] || break
    [ "$(date +%s)" -lt "$deadline" ] || { echo "no pong from:$missing ($(echo "$reply" | tail -n 1))"; return 1; }
    sleep 1
  done
  echo "pong from$nodes"
}
check_healthcheck() {
  load_env
  # Runs in the release's venv (it needs Celery and the app), as the app user.
  reply=$(cd {{ app_src }} && as_app {{ app_bin }}/python -c {{ healthcheck_py }} "$HEALTHCHECK_TASK" "$CHECK_TIMEOUT" 2>&1) || { echo "$reply" | tail -n 1; return 1; }
  echo "$reply" | tail -n 1
}
# Runs check_NAME in a subshell and prints one tab-separated line:
# {{ check_mark }} NAME ok|FAIL MILLISECONDS LAST-LINE-OF-OUTPUT
run_check() {
  started=$(date +%s%N)
  if detail=$("check_$1" 2>&1); then result=ok; else result=FAIL; status=1; fi
  elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
  last=$(printf '%s' "$detail" | tail -n 1 | tr '\t' ' ')
  printf '{{ check_mark }}\t%s\t%s\t%s\t%s\n' "$1" "$result" "$elapsed" "$last"
}
