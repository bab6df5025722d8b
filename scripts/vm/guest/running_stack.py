"""vm-test: boot as an instance launched into a running stack (test image only).

On AWS every instance of a stack shares one broker, and the release command runs once per
release: the stack's first instances run it and record it done, and every instance launched
after them (a scale-out, an instance refresh, a replacement) finds the record and skips it. Each
guest here has a broker of its own, so every boot would be a stack's first. A boot whose test
data says `running_stack` gets the live release's `done` record in the guest's broker, as the
first instances leave it, before cloud-init's final stage starts the program's units; its
app-release-command then says the release already ran. Without it, nothing is written.
"""

import json
import subprocess
from pathlib import Path

from program_files import env_file, redis_cli_command
from vmtest_data import boot_data

from userdata import layout

PARAMETERS = Path("/etc/vm-test/parameters.json")  # the image's SecureStrings: the AUTH token
RECORD = "vm-test: recorded by the stack's first instance"


def main() -> None:
    data = boot_data()
    if not data.get("running_stack"):
        return
    release_parameter = env_file(layout.RELEASE_ENV)["RELEASE_PARAMETER"]
    release = data["parameters"][release_parameter]["value"].partition(layout.RELEASE_DIGEST_SEPARATOR)[0]
    broker = env_file(layout.SECRETS_SOURCE_ENV)
    token = next(p["value"] for name, p in json.loads(PARAMETERS.read_text()).items() if name.endswith("/auth-token"))
    key = layout.release_command_key(release, "done")
    subprocess.run(
        redis_cli_command(broker["REDIS_HOST"], broker["REDIS_PORT"], broker["BROKER_DB"], token, "SET", key, RECORD),
        check=True,
        capture_output=True,
    )
    print(f"vm-test: {key} recorded: a boot into a running stack")


if __name__ == "__main__":
    main()
