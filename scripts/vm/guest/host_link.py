"""vm-test: the guest's side of what a boot reaches on the host (test image only).

A boot whose test data names a `host_link` gets a network card from the harness (qemu's user
network, restricted: the only thing it reaches is what the harness forwards, e.g. the host's
PostgreSQL on <gateway-side address>:5432). This gives that card the address the harness says and
writes the files the data lists (the database's CA, which the DATABASE_URL's sslrootcert names),
world-readable, before cloud-init's final stage starts the program's units. Without `host_link`
it does nothing: the boot has no card.
"""

import subprocess
import time
from pathlib import Path

from vmtest_data import boot_data


def cards() -> list[str]:
    return [p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo"]


def main() -> None:
    link = boot_data().get("host_link")
    if not link:
        return
    deadline = time.monotonic() + 60
    while not cards() and time.monotonic() < deadline:  # udev may still be naming it
        time.sleep(0.5)
    (card,) = cards()
    subprocess.run(["ip", "address", "replace", link["address"], "dev", card], check=True)
    subprocess.run(["ip", "link", "set", card, "up"], check=True)
    for path, content in link.get("files", {}).items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(content)
        Path(path).chmod(0o644)


if __name__ == "__main__":
    main()
