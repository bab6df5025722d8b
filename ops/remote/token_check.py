"""Fails unless every unit named in argv runs with the AUTH token now in Parameter Store: the
broker URL in the environment of its main process. Compared here, on the instance: nothing secret
is printed."""

import os
import subprocess
import sys
import urllib.parse

import boto3

endpoint = os.environ.get("AWS_ENDPOINT_URL_SSM") or os.environ.get("AWS_ENDPOINT_URL") or None
ssm = boto3.client("ssm", region_name=os.environ["AWS_REGION"], endpoint_url=endpoint)
name = os.environ["AUTH_TOKEN_PARAMETER"]
current = ssm.get_parameters(Names=[name], WithDecryption=True)["Parameters"][0]["Value"]
stale = []
for unit in sys.argv[1:]:
    pid = subprocess.run(
        ["systemctl", "show", "-p", "MainPID", "--value", unit], capture_output=True, text=True
    ).stdout.strip()
    if pid in ("", "0"):
        stale.append(unit + " (not running)")
        continue
    with open(f"/proc/{pid}/environ", "rb") as environ:
        variables = dict(item.partition(b"=")[::2] for item in environ.read().split(b"\0") if item)
    url = variables.get(b"CELERY_BROKER_URL", b"").decode()
    if urllib.parse.urlsplit(url).password != current:
        stale.append(unit)
if stale:
    sys.exit("not on the token in Parameter Store: " + ", ".join(stale))
print(f"{len(sys.argv) - 1} units use the token in Parameter Store: " + " ".join(sys.argv[1:]))
