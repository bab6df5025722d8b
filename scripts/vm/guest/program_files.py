"""vm-test: reading what the program wrote on this machine, as its units read it (test image only).

Its env files (KEY='value' lines, `userdata/render.py` render_env) and the broker they name,
reached with redis-cli over TLS as the program's scripts reach it.
"""

from pathlib import Path

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def env_file(path: str | Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in Path(path).read_text().splitlines() if "=" in line)
    return {key: value.strip("'") for key, value in pairs}


def redis_cli_command(host: str, port: str | int, db: str | int, password: str | None, *args: str) -> list[str]:
    """password None: an anonymous connection, which the broker must refuse."""
    auth = ["--pass", password] if password is not None else []
    connection = ["--tls", "--cacert", CA_BUNDLE, "-h", host, "-p", str(port), *auth, "--no-auth-warning"]
    return ["redis-cli", *connection, "-n", str(db), *args]
