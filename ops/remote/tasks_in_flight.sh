# ops tasks in flight
CHECK_TIMEOUT={{ check_timeout }}
{{ helpers }}set -e
load_env
cd {{ app_src }}
for what in active reserved; do
  reply=$(as_app {{ app_bin }}/celery --app "$CELERY_APP" \
    inspect "$what" --json --timeout "$CHECK_TIMEOUT")
  echo "$what $(echo "$reply" | tail -n 1)"
done
