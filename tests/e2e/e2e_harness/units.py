"""Reads systemd unit files and environment files the way systemd does, so the harness runs
each service with the command line, environment, directory and user its unit gives it.

Covers what the program's units use (systemd.service(5), systemd.exec(5), systemd.unit(5)):
ExecStartPre/ExecStart with their prefixes, EnvironmentFile= in order, ${VAR} / $VAR expansion,
the %i %I %n %N %p %H %% specifiers, WorkingDirectory=, User=/Group=, RuntimeDirectory=,
StateDirectory=, Type=, KillMode=, TimeoutStopSec=.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field

# What systemd's system manager gives every service before EnvironmentFile= is read.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TIMEOUT_STOP = 90.0


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    privileged: bool = False  # "+": runs as root with no sandbox, whatever User= says
    ignore_failure: bool = False  # "-": a non-zero exit does not fail the unit


@dataclass(frozen=True)
class Service:
    name: str
    directives: dict[str, list[str]] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        values = self.directives.get(key)
        return values[-1] if values else default

    def all(self, key: str) -> list[str]:
        return list(self.directives.get(key, []))

    @property
    def type(self) -> str:
        return self.get("Type", "simple") or "simple"

    @property
    def user(self) -> str | None:
        return self.get("User")

    @property
    def group(self) -> str | None:
        return self.get("Group")

    @property
    def working_directory(self) -> str:
        return self.get("WorkingDirectory", "/") or "/"

    @property
    def environment_files(self) -> list[tuple[str, bool]]:
        """(path, optional) in order; a leading "-" makes a missing file fine."""
        return [(path[1:], True) if path.startswith("-") else (path, False) for path in self.all("EnvironmentFile")]

    @property
    def timeout_stop(self) -> float:
        return parse_timespan(self.get("TimeoutStopSec") or "") or DEFAULT_TIMEOUT_STOP

    @property
    def kill_mode(self) -> str:
        return self.get("KillMode", "control-group") or "control-group"


def parse_unit(name: str, text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> directive -> values (a directive may repeat), with continuation lines joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        if current is None or "=" not in line:
            raise ValueError(f"{name}: cannot read line {raw!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        if value == "":
            current[key] = []  # an empty assignment resets a list-valued directive
        else:
            current.setdefault(key, []).append(value)
    return sections


def read_service(name: str, text: str, hostname: str) -> Service:
    directives = parse_unit(name, text).get("Service", {})
    expanded = {
        key: [expand_specifiers(value, name, hostname) for value in values] for key, values in directives.items()
    }
    return Service(name, expanded)


def expand_specifiers(text: str, unit_name: str, hostname: str) -> str:
    prefix_and_instance, _, _suffix = unit_name.rpartition(".")
    prefix, at, instance = prefix_and_instance.partition("@")
    table = {
        "n": unit_name,
        "N": prefix_and_instance,
        "p": prefix,
        "i": instance if at else "",
        "I": instance if at else "",
        "H": hostname,
        "%": "%",
    }

    def replace(match: re.Match[str]) -> str:
        letter = match.group(1)
        if letter not in table:
            raise ValueError(f"{unit_name}: specifier %{letter} is not supported by the harness")
        return table[letter]

    return re.sub(r"%(.)", replace, text)


def parse_timespan(text: str) -> float | None:
    """systemd time spans as the units use them: "600", "30s", "5min", "1h 30s"."""
    if not text:
        return None
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[unit]
    return total


def parse_env_file(text: str) -> dict[str, str]:
    """systemd EnvironmentFile= syntax: KEY=VALUE lines, # or ; comments, values optionally in
    single or double quotes (double quotes take backslash escapes)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise ValueError(f"not an assignment: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        values[key.strip()] = value
    return values


def parse_command(line: str, env: dict[str, str]) -> Command:
    """One ExecStart=/ExecStartPre= line: prefixes, then words; "${VAR}" becomes exactly the
    variable's value, a lone "$VAR" word splits on whitespace (systemd.service(5), Command lines)."""
    privileged = ignore = False
    while line and line[0] in "-+@!:":
        privileged |= line[0] in "+!"
        ignore |= line[0] == "-"
        line = line[1:]
    argv: list[str] = []
    for word in shlex.split(line, posix=True):
        lone = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if lone:
            argv.extend(env.get(lone.group(1), "").split())
            continue
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
    return Command(tuple(argv), privileged, ignore)


# What every unit the stack installs must score at most (systemd-analyze security --offline).
MAX_EXPOSURE = 2.0


def exposure(unit_file: str) -> tuple[float, list[str]]:
    """(overall exposure, the checks that add to it) from `systemd-analyze security --offline`."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", unit_file], capture_output=True, text=True
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, f"{unit_file}: no exposure level in {result.stdout}{result.stderr}"
    failing = [line.strip() for line in result.stdout.splitlines() if line.lstrip().startswith("✗")]
    return float(match.group(1)), failing
