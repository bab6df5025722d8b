set -u
load_env() {
  set -a
  . {{ app_env }}
  . {{ version_env }}
  . {{ secrets_env }}
  set +a
}
# The app user, without PAM and keeping the environment: what the units' User=/Group= do.
as_app() {
  setpriv --reuid={{ user }} --regid={{ group }} --clear-groups -- "$@"
}
# One {{ worker_unit_prefix }}<queue>{{ worker_unit_suffix }} per {{ worker_env_prefix }}<queue>{{ worker_env_suffix }} (the contract).
worker_queues() {
  for f in {{ worker_env_prefix }}*{{ worker_env_suffix }}; do
    [ -e "$f" ] || continue
    q=${f#{{ worker_env_prefix }}}
    echo "${q%{{ worker_env_suffix }}}"
  done
}
