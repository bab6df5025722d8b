"""One rendered instance, simulated on this host: its user-data's files laid out in a directory
of the test run, and each of its units run as systemd would run it (see units.py, launch.py).

Production paths are bind-mounted per process (`unshare --mount`), so every unit runs with the
exact paths its file names (userdata/layout.py):
  APP_ROOT                  shared by all machines of a run: the first machine's
                            app-release.service installs the live release, the others
                            find it active (or one per machine: Site.with_own_app_root)
  PER_MACHINE_DIRS          per machine (the unit directory among them)
  /etc/passwd, /etc/group   the host's plus the `app` system user cloud-init would create
What is not emulated: the units' sandboxing directives (ProtectSystem=, SystemCallFilter=, ...),
which `systemd-analyze security` checks statically, Restart= (the tests restart on purpose), and
timers (a test runs the service a timer starts, when it wants a run).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from e2e_harness.units import SYSTEM_PATH, Command, Service, parse_command, parse_env_file, read_service
from userdata.layout import APP_ROOT, PER_MACHINE_DIRS, UNIT_DIR, USER

LAUNCHER = Path(__file__).with_name("launch.py")
APP_USER = USER
APP_UID = APP_GID = 64123
# Production directory -> name of its stand-in under the machine's directory (/a/b -> a-b).
# The unit directory is one of them, so `systemd-analyze verify` sees this machine's units only.
MACHINE_DIRS = {path: path.strip("/").replace("/", "-") for path in PER_MACHINE_DIRS}


@dataclass(frozen=True)
class Site:
    """What the machines of one test run share."""

    base: Path  # world-traversable: the app user must reach the CA file and the release
    srv_app: Path  # stands in for APP_ROOT
    passwd: Path
    group: Path
    # What an EC2 instance's metadata service would provide (credentials, the SSM endpoint):
    # handed to every unit, since any process on an instance can reach IMDS.
    instance_environment: dict[str, str]
    # Bound over /etc/hosts when the stack's endpoint is a name (the failover tests): what DNS
    # answers for it, moved by resolve().
    hosts: Path | None = None

    @classmethod
    def create(cls, base: Path, instance_environment: dict[str, str], names: dict[str, str] | None = None) -> Site:
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        # Not there on a fresh instance: app-release.service creates it, as root under the unit's
        # UMask=0027. Started 0750 (what that umask leaves), so the unit must set its mode itself.
        srv_app = base / "srv-app"
        srv_app.mkdir(exist_ok=True)
        srv_app.chmod(0o750)
        passwd, group = base / "passwd", base / "group"
        passwd.write_text(
            Path("/etc/passwd").read_text() + f"{APP_USER}:x:{APP_UID}:{APP_GID}::/nonexistent:/usr/sbin/nologin\n"
        )
        group.write_text(Path("/etc/group").read_text() + f"{APP_USER}:x:{APP_GID}:\n")
        for path in (passwd, group):
            path.chmod(0o644)
        site = cls(base, srv_app, passwd, group, dict(instance_environment), base / "hosts" if names else None)
        for name, address in (names or {}).items():
            site.resolve(name, address)
        return site

    def resolve(self, name: str, address: str) -> None:
        """From now on `name` resolves to `address` in every unit (glibc reads the hosts file on
        each lookup). Written in place: the units' bind mounts hold this file, not its path."""
        assert self.hosts is not None, "a site without names"
        current = self.hosts.read_text() if self.hosts.exists() else Path("/etc/hosts").read_text()
        kept = [line for line in current.splitlines() if not line.endswith(f" {name}")]
        with self.hosts.open("w") as hosts:
            hosts.write("\n".join([*kept, f"{address} {name}"]) + "\n")
        self.hosts.chmod(0o644)

    def with_own_app_root(self, hostname: str) -> Site:
        """This site, but with an APP_ROOT of the machine's own: separate instances, each
        installing and switching releases by itself (a rolling deploy)."""
        srv_app = self.base / f"srv-app-{hostname}"
        srv_app.mkdir(exist_ok=True)
        srv_app.chmod(0o750)
        return dataclasses.replace(self, srv_app=srv_app)


def _id(name: str | None) -> int:
    if name in (None, "root"):
        return 0
    if name == APP_USER:
        return APP_UID
    raise ValueError(f"user/group {name!r} is neither root nor {APP_USER}")


@dataclass
class SimulatedMachine:
    site: Site
    hostname: str
    files: list  # userdata.render.WrittenFile, as read back from the user-data
    units: list[str]  # enabled units, in the order the user-data enables them
    root: Path = field(init=False)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.root = self.site.base / self.hostname
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        (self.root / "scratch").mkdir(exist_ok=True)
        for name in MACHINE_DIRS.values():
            (self.root / name).mkdir(exist_ok=True)
            (self.root / name).chmod(0o755)
        for file in self.files:
            self._write(file)

    # --- files ------------------------------------------------------------------------------

    def host_path(self, machine_path: str) -> Path:
        """Where a production path of this machine lives in the test run."""
        if machine_path == APP_ROOT or machine_path.startswith(APP_ROOT + "/"):
            return self.site.srv_app / machine_path.removeprefix(APP_ROOT).lstrip("/")
        for prod, name in MACHINE_DIRS.items():
            if machine_path == prod or machine_path.startswith(prod + "/"):
                return self.root / name / machine_path.removeprefix(prod).lstrip("/")
        raise ValueError(f"{machine_path}: the harness has no stand-in for this path (see MACHINE_DIRS)")

    def _write(self, file) -> None:
        path = self.host_path(file.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file.content)
        user, _, group = file.owner.partition(":")
        os.chown(path, _id(user), _id(group or user))
        path.chmod(int(file.permissions, 8))

    @property
    def enabled_services(self) -> list[str]:
        """The enabled units the harness runs: services, not the timers among them."""
        return [unit for unit in self.units if unit.endswith(".service")]

    def unit_files(self) -> list[str]:
        """Every unit file the user-data wrote, enabled or started by a timer."""
        return sorted(path.name for path in self.host_path(UNIT_DIR).iterdir())

    def unit_text(self, unit: str) -> str:
        return self.host_path(f"{UNIT_DIR}/{unit}").read_text()

    def service(self, unit: str) -> Service:
        return read_service(unit, self.unit_text(unit), self.hostname)

    def binds(self) -> list[tuple[str, str]]:
        pairs = [(str(self.site.srv_app), APP_ROOT)]
        pairs += [(str(self.root / name), prod) for prod, name in MACHINE_DIRS.items()]
        if self.site.hosts:
            pairs.append((str(self.site.hosts), "/etc/hosts"))
        return pairs + [(str(self.site.passwd), "/etc/passwd"), (str(self.site.group), "/etc/group")]

    # --- environment --------------------------------------------------------------------------

    def environment(self, service: Service) -> dict[str, str]:
        env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", **self.site.instance_environment}
        if service.user:
            env |= {"USER": service.user, "LOGNAME": service.user, "HOME": "/nonexistent", "SHELL": "/usr/sbin/nologin"}
        if service.get("RuntimeDirectory"):
            env["RUNTIME_DIRECTORY"] = f"/run/{service.get('RuntimeDirectory')}"
        if service.get("StateDirectory"):
            env["STATE_DIRECTORY"] = f"/var/lib/{service.get('StateDirectory')}"
        for assignments in service.all("Environment"):  # before the files, which override it
            env |= dict(word.split("=", 1) for word in shlex.split(assignments))
        for path, optional in service.environment_files:
            host = self.host_path(path)
            if not host.exists():
                if optional:
                    continue
                raise FileNotFoundError(f"{service.name}: EnvironmentFile {path} does not exist")
            env |= parse_env_file(host.read_text())
        return env

    def _prepare_directories(self, service: Service) -> None:
        uid, gid = _id(service.user), _id(service.group or service.user)
        for key, parent in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib")):
            name = service.get(key)
            if name:
                path = self.host_path(f"{parent}/{name}")
                path.mkdir(parents=True, exist_ok=True)
                os.chown(path, uid, gid)
                path.chmod(int(service.get(f"{key}Mode", "0755"), 8))

    def _spec(self, service: Service, command: Command, env: dict[str, str], index: int) -> Path:
        spec = {
            "hostname": self.hostname,
            "scratch": str(self.root / "scratch"),
            "binds": self.binds(),
            "uid": None if command.privileged or not service.user else _id(service.user),
            "gid": None
            if command.privileged or not (service.group or service.user)
            else _id(service.group or service.user),
            "cwd": service.working_directory,
            "umask": service.get("UMask", "0022"),
            "argv": list(command.argv),
            "env": env,
        }
        path = self.root / "scratch" / f"{service.name}.{index}.json"
        path.write_text(json.dumps(spec))
        path.chmod(0o600)
        return path

    def _popen(self, spec: Path, log: Path) -> subprocess.Popen:
        with log.open("ab") as out:
            return subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--uts",
                    "--propagation",
                    "private",
                    "/usr/bin/python3",
                    str(LAUNCHER),
                    str(spec),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_path(self, unit: str) -> Path:
        return self.root / "logs" / f"{unit}.log"

    def log(self, unit: str) -> str:
        path = self.log_path(unit)
        return path.read_text(errors="replace") if path.exists() else ""

    # --- running units ------------------------------------------------------------------------

    def run_oneshot(self, unit: str, timeout: float = 300, extra_env: dict[str, str] | None = None) -> None:
        """ExecStartPre= then ExecStart= lines in order, each to completion, as systemd does.
        extra_env: what a stand-in needs (e2e_harness/systemd.py), never the unit's own settings."""
        service = self.service(unit)
        self._prepare_directories(service)
        env = self.environment(service) | (extra_env or {})
        lines = service.all("ExecStartPre") + service.all("ExecStart")
        for index, line in enumerate(lines):
            command = parse_command(line, env)
            process = self._popen(self._spec(service, command, env, index), self.log_path(unit))
            code = process.wait(timeout=timeout)
            if code != 0 and not command.ignore_failure:
                raise RuntimeError(
                    f"{unit} on {self.hostname}: {' '.join(command.argv)} exited {code}\n{self.log(unit)[-3000:]}"
                )

    def start(
        self,
        unit: str,
        extra_env: dict[str, str] | None = None,
        as_name: str | None = None,
        argv: list[str] | None = None,
    ) -> subprocess.Popen:
        """Starts a long-running unit. extra_env, as_name and argv exist for the refusal tests and
        the benchmarks only: a second copy of a unit with a broken secret, or the naive layout's
        worker with the unit's user, directory and environment but its own command line."""
        service = self.service(unit)
        if service.type == "oneshot":
            raise ValueError(f"{unit} is a oneshot; use run_oneshot")
        self._prepare_directories(service)
        env = self.environment(service) | (extra_env or {})
        (command_line,) = service.all("ExecStart")
        command = Command(tuple(argv)) if argv else parse_command(command_line, env)
        process = self._popen(self._spec(service, command, env, 0), self.log_path(as_name or unit))
        self.processes[as_name or unit] = process
        return process

    def main_pid(self, unit: str) -> int:
        return self.processes[unit].pid

    def kill(self, unit: str, sig: int = signal.SIGKILL) -> None:
        """`systemctl kill --signal=SIG`: every process of the unit (its process group)."""
        process = self.processes.pop(unit)
        _killpg(process.pid, sig)
        process.wait(timeout=30)
        _killpg(process.pid, signal.SIGKILL)  # leftovers, as systemd cleans the cgroup

    def stop(self, unit: str) -> tuple[float, int]:
        """`systemctl stop`: with KillMode=mixed SIGTERM goes to the main process only; whatever
        is left after TimeoutStopSec= (or once the main process exits) gets SIGKILL. Returns the
        seconds the stop took and the main process's exit status (negative: killed by signal)."""
        service = self.service(unit)
        process = self.processes.pop(unit)
        started = time.monotonic()
        if service.kill_mode == "mixed":
            process.send_signal(signal.SIGTERM)
        else:
            _killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=service.timeout_stop)
        except subprocess.TimeoutExpired:
            _killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        elapsed = time.monotonic() - started
        _killpg(process.pid, signal.SIGKILL)
        return elapsed, process.returncode

    def stop_all(self) -> None:
        for unit in reversed(list(self.processes)):
            self.kill(unit)

    def boot(self) -> None:
        """What the user-data's `systemctl enable --now` does: oneshots to completion, then the
        long-running units (their Requires=/After= name the oneshots)."""
        for unit in self.enabled_services:
            if self.service(unit).type == "oneshot":
                self.run_oneshot(unit)
        for unit in self.enabled_services:
            if self.service(unit).type != "oneshot":
                self.start(unit)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def run_like(
    machine: SimulatedMachine, unit: str, argv: list[str], extra_env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Runs a one-off command the way an operator would next to a unit: its user, directory and
    environment files (the guide's `set -a; . env; celery inspect ping`)."""
    service = machine.service(unit)
    return _run_once(machine, service, argv, machine.environment(service) | (extra_env or {}), timeout)


def run_as_root(machine: SimulatedMachine, argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """A root command on the machine (what cloud-init or an operator with sudo runs)."""
    service = Service("root-command", {"WorkingDirectory": ["/"]})
    return _run_once(machine, service, argv, {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}, timeout)


def _run_once(
    machine: SimulatedMachine, service: Service, argv: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """One command in its own mount and UTS namespace, with the machine's paths mounted."""
    spec = machine._spec(service, Command(tuple(argv)), env, int(time.monotonic() * 1000))
    return subprocess.run(
        ["unshare", "--mount", "--uts", "--propagation", "private", "/usr/bin/python3", str(LAUNCHER), str(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
