"""The shell scripts the tool runs on instances: data, built by pure functions, so a test can
diff them and the local executor can run the very same text on real processes.

Rules every script here follows:
- POSIX sh (SSM's AWS-RunShellScript runs the text with /bin/sh, dash on Debian).
- No secret in the text: SSM keeps command text in its history, so the AUTH token and the
  Django key are read ON the instance from the env files (docs/machine-layout.md), and nothing
  prints them (redis-cli gets the password through REDISCLI_AUTH, never argv).
- Paths, units and variables come from the machine contract, userdata/layout.py.
- Anything interpolated from Python is shell-quoted.
"""

from __future__ import annotations

import shlex

from userdata.layout import (
    APP_BIN,
    APP_ENV,
    APP_SRC,
    BEAT_UNIT,
    GROUP,
    GUNICORN_UNIT,
    ONESHOT_UNITS,
    RELEASE_BIN,
    RELEASE_COMMAND_BIN,
    RELEASE_COMMAND_ENV,
    RELEASE_ENV,
    RELEASES_DIR,
    REQUIRED_APP_VARIABLES,
    SECRETS_ENV,
    SECRETS_SOURCE_ENV,
    SECRETS_UNIT,
    SYSTEM_PYTHON,
    UNIT_DIR,
    USER,
    VERSION_ENV,
    WEB_ROLE,
    WORKER_ENV_PREFIX,
    WORKER_ENV_SUFFIX,
    WORKER_ROLE,
    WORKER_UNIT_PREFIX,
    WORKER_UNIT_SUFFIX,
)

CHECK_MARK = "ops-check"  # first field of each result line a verify script prints

# Which checks run on which role, in order. Workers answer `celery inspect ping`; the
# healthcheck round-trip is sent from web instances (where the app enqueues in production).
CHECKS_BY_ROLE: dict[str, tuple[str, ...]] = {
    WEB_ROLE: ("env_file", "services", "redis_ping", "healthcheck"),
    WORKER_ROLE: ("env_file", "services", "redis_ping", "celery_ping"),
}
# The units of a worker's queues, listed from its per-queue env files.
_WORKER_UNITS = f'for q in $(worker_queues); do units="$units {WORKER_UNIT_PREFIX}$q{WORKER_UNIT_SUFFIX}"; done'
_NO_WORKER_ENV = f"no {WORKER_ENV_PREFIX}*{WORKER_ENV_SUFFIX}: no worker units here"

# Shared helpers. Every function runs in its own subshell (see run_check), so loading the
# environment never leaks from one check into another.
_HELPERS = f"""\
set -u
load_env() {{
  set -a
  . {APP_ENV}
  . {VERSION_ENV}
  . {SECRETS_ENV}
  set +a
}}
# The app user, without PAM and keeping the environment: what the units' User=/Group= do.
as_app() {{
  setpriv --reuid={USER} --regid={GROUP} --clear-groups -- "$@"
}}
# One {WORKER_UNIT_PREFIX}<queue>{WORKER_UNIT_SUFFIX} per {WORKER_ENV_PREFIX}<queue>{WORKER_ENV_SUFFIX} (the contract).
worker_queues() {{
  for f in {WORKER_ENV_PREFIX}*{WORKER_ENV_SUFFIX}; do
    [ -e "$f" ] || continue
    q=${{f#{WORKER_ENV_PREFIX}}}
    echo "${{q%{WORKER_ENV_SUFFIX}}}"
  done
}}
"""

_CHECK_FUNCTIONS = f"""\
check_env_file() {{
  for f in {APP_ENV} {VERSION_ENV} {SECRETS_ENV}; do
    [ -r "$f" ] || {{ echo "$f is missing"; return 1; }}
  done
  load_env
  for v in {" ".join(REQUIRED_APP_VARIABLES)}; do
    eval "[ -n \\"\\${{$v:-}}\\" ]" || {{ echo "$v is not set"; return 1; }}
  done
  echo "env files present"
}}
check_services() {{
  units="{" ".join(ONESHOT_UNITS)}"
  if [ "$ROLE" = {WEB_ROLE} ]; then units="$units {GUNICORN_UNIT}"; fi
  {_WORKER_UNITS}
  if [ "$EXPECT_BEAT" = yes ]; then units="$units {BEAT_UNIT}"; fi
  bad=""
  for u in $units; do
    state=$(systemctl is-active "$u")
    [ "$state" = active ] || bad="$bad $u=$state"
  done
  [ -z "$bad" ] || {{ echo "not active:$bad"; return 1; }}
  echo "active: $units"
}}
check_redis_ping() {{
  load_env
  rest=${{CELERY_BROKER_URL#rediss://}}
  [ "$rest" != "$CELERY_BROKER_URL" ] || {{ echo "CELERY_BROKER_URL is not a rediss:// URL"; return 1; }}
  auth=${{rest%%@*}}
  REDISCLI_AUTH=${{auth#:}}
  export REDISCLI_AUTH
  hostport=${{rest#*@}}
  hostport=${{hostport%%/*}}
  host=${{hostport%:*}}
  port=${{hostport##*:}}
  # The CA file is URL-encoded in the query (app-fetch-secrets urlencodes it); the URL goes
  # through stdin, never argv, because it holds the token.
  ca=$(printf '%s' "$CELERY_BROKER_URL" | {SYSTEM_PYTHON} -c '
import sys, urllib.parse as url
print(url.parse_qs(url.urlsplit(sys.stdin.read()).query).get("ssl_ca_certs", [""])[0])')
  reply=$(timeout "$CHECK_TIMEOUT" redis-cli --tls ${{ca:+--cacert "$ca"}} -h "$host" -p "$port" PING 2>&1)
  [ "$reply" = PONG ] || {{ echo "redis $host:$port: $reply"; return 1; }}
  echo "PONG from $host:$port over TLS with AUTH"
}}
check_celery_ping() {{
  load_env
  nodes=""
  for q in $(worker_queues); do nodes="$nodes $q@$(uname -n)"; done
  [ -n "$nodes" ] || {{ echo "{_NO_WORKER_ENV}"; return 1; }}
  destination=$(echo $nodes | tr ' ' ,)
  # A broadcast reaches only workers already listening: a worker just restarted misses a ping
  # sent before it is ready, so ask again until every node answered or CHECK_TIMEOUT ran out.
  deadline=$(( $(date +%s) + CHECK_TIMEOUT ))
  while :; do
    reply=$(cd {APP_SRC} && as_app {APP_BIN}/celery --app "$CELERY_APP" \\
      inspect ping --json --timeout 2 --destination "$destination" 2>&1)
    missing=""
    for n in $nodes; do
      case "$reply" in *"\\"$n\\""*) ;; *) missing="$missing $n" ;; esac
    done
    [ -n "$missing" ] || break
    [ "$(date +%s)" -lt "$deadline" ] || {{ echo "no pong from:$missing ($(echo "$reply" | tail -n 1))"; return 1; }}
    sleep 1
  done
  echo "pong from$nodes"
}}
check_healthcheck() {{
  load_env
  # Needs no result backend: a worker accepting the task shows in its `inspect stats` total.
  reply=$(cd {APP_SRC} && as_app {APP_BIN}/python -c '
import os, sys, time
from celery.app.utils import find_app
app = find_app(os.environ["CELERY_APP"])
name, limit = sys.argv[1], float(sys.argv[2])
def accepted():
    replies = app.control.inspect(timeout=1.0).stats() or {{}}
    if not replies:
        raise SystemExit("no worker answered inspect stats")
    return sum(reply.get("total", {{}}).get(name, 0) for reply in replies.values())
before = accepted()
started = time.monotonic()
app.send_task(name)
while accepted() <= before:
    if time.monotonic() - started > limit:
        raise SystemExit(f"no worker accepted {{name}} within {{limit:g}} s")
print(f"{{name}} accepted by a worker after {{time.monotonic() - started:.1f}} s")
' "$HEALTHCHECK_TASK" "$CHECK_TIMEOUT" 2>&1) || {{ echo "$reply" | tail -n 1; return 1; }}
  echo "$reply" | tail -n 1
}}
# Runs check_NAME in a subshell and prints one tab-separated line:
# ops-check NAME ok|FAIL MILLISECONDS LAST-LINE-OF-OUTPUT
run_check() {{
  started=$(date +%s%N)
  if detail=$("check_$1" 2>&1); then result=ok; else result=FAIL; status=1; fi
  elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
  last=$(printf '%s' "$detail" | tail -n 1 | tr '\\t' ' ')
  printf '{CHECK_MARK}\\t%s\\t%s\\t%s\\t%s\\n' "$1" "$result" "$elapsed" "$last"
}}
"""


def _settings(**values: str) -> str:
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items())


def verify_script(role: str, *, expect_beat: bool, healthcheck_task: str, check_timeout: int) -> str:
    """One script per instance: every check of its role, one result line each; exit 1 if any
    failed. expect_beat: the instance carries the Beat tag and Beat should be running now."""
    checks = CHECKS_BY_ROLE[role]
    settings = _settings(
        ROLE=role,
        EXPECT_BEAT="yes" if expect_beat else "no",
        HEALTHCHECK_TASK=healthcheck_task,
        CHECK_TIMEOUT=str(check_timeout),
    )
    runs = "".join(f"run_check {name}\n" for name in checks)
    return f"# ops verify ({role})\n{settings}{_HELPERS}{_CHECK_FUNCTIONS}status=0\n{runs}exit $status\n"


def beat_script(action: str) -> str:
    """Stops or starts Beat and prints its resulting state; fails unless the state is the one
    asked for (a Beat that dies right after start is caught here, not at the next tick)."""
    wanted = {"stop": "inactive", "start": "active"}[action]
    return (
        f"# ops beat {action}\n"
        "set -u\n"
        f"systemctl {action} {BEAT_UNIT}\n"
        f"state=$(systemctl is-active {BEAT_UNIT})\n"
        f'echo "{BEAT_UNIT}: $state"\n'
        f'[ "$state" = {wanted} ]\n'
    )


def tasks_in_flight_script(check_timeout: int) -> str:
    """Asks every worker of the broker (a broadcast, so one instance is enough) for its active
    and reserved tasks; prints `active <json>` and `reserved <json>`."""
    return (
        "# ops tasks in flight\n" + _settings(CHECK_TIMEOUT=str(check_timeout)) + _HELPERS + "set -e\n"
        "load_env\n"
        f"cd {APP_SRC}\n"
        "for what in active reserved; do\n"
        f'  reply=$(as_app {APP_BIN}/celery --app "$CELERY_APP" \\\n'
        '    inspect "$what" --json --timeout "$CHECK_TIMEOUT")\n'
        '  echo "$what $(echo "$reply" | tail -n 1)"\n'
        "done\n"
    )


def current_release_script() -> str:
    return f"# ops current release\nset -eu\n{SYSTEM_PYTHON} {RELEASE_BIN} current\n"


def install_release_script(release: str, sha256: str) -> str:
    """Installs (downloads and builds) a release without touching the running one: its artifact
    only with this digest, and an installed copy only if it was installed with it."""
    return (
        f"# ops install release\nset -eu\n"
        f"set -a\n. {RELEASE_ENV}\nset +a\n"
        f"{SYSTEM_PYTHON} {RELEASE_BIN} install {shlex.quote(release)} --sha256 {shlex.quote(sha256)}\n"
    )


def release_command_script(release: str) -> str:
    """app.releaseCommand for an installed release that is not active yet: the machine script
    app-release-command.service runs at boot, as the app user with the app units' env files but
    that release's version.env and venv (its lock makes a concurrent boot wait, not run it)."""
    release_dir = f"{RELEASES_DIR}/{shlex.quote(release)}"
    return (
        "# ops release command\n" + _HELPERS + "set -e\n"
        f"[ -r {release_dir}/version.env ] || {{ echo 'release not installed here'; exit 1; }}\n"
        f"[ -r {RELEASE_COMMAND_ENV} ] || {{ echo 'no {RELEASE_COMMAND_ENV}: the instance predates "
        "app.releaseCommand; pulumi up replaces it'; exit 1; }\n"
        f"load_env\nset -a\n. {release_dir}/version.env\n. {RELEASE_COMMAND_ENV}\nset +a\n"
        f"as_app {release_dir}/venv/bin/python {RELEASE_COMMAND_BIN} 2>&1\n"
    )


def exec_script(argv: list[str]) -> str:
    """A one-off command as the app user in the current release, with the app units' env files
    and its venv first on PATH; `manage.py ...` runs with the venv's python."""
    words = ["python", *argv] if argv[0] == "manage.py" else argv
    return (
        "# ops exec\n" + _HELPERS + "set -e\nload_env\n"
        f"cd {APP_SRC}\nPATH={APP_BIN}:$PATH\n"
        f"as_app {shlex.join(words)}\n"
    )


def _restarted_units(role: str) -> str:
    """Sets $units to what a release switch restarts on this role."""
    if role == WEB_ROLE:
        return f"units={GUNICORN_UNIT}\n"
    return f'units=""\n{_WORKER_UNITS}\n[ -n "$units" ] || {{ echo \'{_NO_WORKER_ENV}\'; exit 1; }}\n'


def switch_release_script(role: str, release: str) -> str:
    """Points `current` at the release and restarts the role's units so they run it. Workers
    stop warm (the unit's TimeoutStopSec outlasts the hard time limit), so no task is killed."""
    return (
        f"# ops switch release ({role})\n" + _HELPERS + "set -e\n"
        f"{SYSTEM_PYTHON} {RELEASE_BIN} activate {shlex.quote(release)}\n"
        + _restarted_units(role)
        + "systemctl restart $units\n"
        + f'echo "$({SYSTEM_PYTHON} {RELEASE_BIN} current) is active; units restarted"\n'
    )


def stop_timeouts_script(role: str) -> str:
    """Prints `UNIT SECONDS` for each unit a switch restarts: the TimeoutStopSec= the program
    rendered into it, which a warm restart may take before systemd kills a running task."""
    return (
        f"# ops stop timeouts ({role})\n" + _HELPERS + "set -e\n" + _restarted_units(role) + "for u in $units; do\n"
        f'  printf \'%s %s\\n\' "$u" "$(sed -n \'s/^TimeoutStopSec=//p\' {UNIT_DIR}/"$u")"\n'
        "done\n"
    )


def refresh_secrets_script(role: str) -> str:
    """Token rotation on one instance: fetch the secrets again (a reload of app-secrets.service
    reads the token now in Parameter Store), then restart the role's units once so they load it.
    Not a restart of app-secrets: its Requires= dependents would restart with it (twice in all),
    and stay stopped if the fetch failed. A failed fetch changes nothing and says so: the units
    keep running on the token they have, which ElastiCache still accepts under ROTATE. Workers
    stop warm, as in a release switch."""
    return (
        f"# ops refresh secrets ({role})\n"
        + _HELPERS
        + "set -e\n"
        + _restarted_units(role)
        + "units=$(echo $units)\n"
        + f"if ! systemctl reload {SECRETS_UNIT}; then\n"
        + f'  echo "fetching the secrets from Parameter Store failed (journalctl -u {SECRETS_UNIT}); '
        + 'nothing was restarted: $units still run on the token they had" >&2\n'
        + "  exit 1\n"
        + "fi\n"
        + "systemctl restart $units\n"
        + 'echo "secrets fetched again; restarted: $units"\n'
    )


def token_check_script(role: str, *, expect_beat: bool) -> str:
    """Fails unless every running app unit of this instance was started with the token now in
    Parameter Store: the broker URL in each main process's own environment, compared on the
    instance (nothing secret is printed or sent back). With the old token this fails, although
    ElastiCache still accepts both during the rotation."""
    beat = f'units="$units {BEAT_UNIT}"\n' if expect_beat else ""
    return (
        f"# ops token check ({role})\n"
        + _HELPERS
        + "set -e\n"
        + _restarted_units(role)
        + beat
        + f"set -a\n. {SECRETS_SOURCE_ENV}\nset +a\n"
        + f"{SYSTEM_PYTHON} - $units <<'PYTHON'\n"
        + _TOKEN_CHECK
        + "PYTHON\n"
    )


_TOKEN_CHECK = """\
import os, subprocess, sys, urllib.parse
import boto3
endpoint = os.environ.get("AWS_ENDPOINT_URL_SSM") or os.environ.get("AWS_ENDPOINT_URL") or None
ssm = boto3.client("ssm", region_name=os.environ["AWS_REGION"], endpoint_url=endpoint)
name = os.environ["AUTH_TOKEN_PARAMETER"]
current = ssm.get_parameters(Names=[name], WithDecryption=True)["Parameters"][0]["Value"]
stale = []
for unit in sys.argv[1:]:
    pid = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", unit],
                         capture_output=True, text=True).stdout.strip()
    if pid in ("", "0"):
        stale.append(unit + " (not running)")
        continue
    with open(f"/proc/{pid}/environ", "rb") as environ:
        variables = dict(item.partition(b"=")[::2] for item in environ.read().split(b"\\0") if item)
    url = variables.get(b"CELERY_BROKER_URL", b"").decode()
    if urllib.parse.urlsplit(url).password != current:
        stale.append(unit)
if stale:
    sys.exit("not on the token in Parameter Store: " + ", ".join(stale))
print(f"{len(sys.argv) - 1} units use the token in Parameter Store: " + " ".join(sys.argv[1:]))
"""
