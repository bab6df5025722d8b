"""The scripts cloud-init puts on every instance, run as the instance runs them: Debian's
/usr/bin/python3 with Debian's boto3, against moto's server on loopback for Parameter Store."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.machine_scripts import (
    SYSTEM_PYTHON,
    UNIT_UMASK,
    artifact,
    release_tool,
    shipped,
    unreadable_for_others,
)

TOKEN = "Tok3nWithOnlyLettersAndDigits0123456789abcdef"


@pytest.fixture(scope="module")
def parameter_store():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    ssm = boto3.client(
        "ssm",
        region_name="eu-west-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ssm.put_parameter(Name="/django-stack/test/redis/auth-token", Value=TOKEN, Type="SecureString")
    ssm.put_parameter(Name="/django-stack/test/django/secret-key", Value="k3y-!%*+-.:=^_~", Type="SecureString")
    yield endpoint
    server.stop()


def fetch(parameter_store: str, target: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_ENDPOINT_URL_SSM": parameter_store,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "eu-west-1",
        "AUTH_TOKEN_PARAMETER": "/django-stack/test/redis/auth-token",
        "DJANGO_SECRET_KEY_PARAMETER": "/django-stack/test/django/secret-key",
        "REDIS_HOST": "master.example.cache.amazonaws.com",
        "REDIS_PORT": "6379",
        "BROKER_DB": "0",
        "RESULT_DB": "1",
        "SECRETS_ENV_FILE": str(target),
    } | overrides
    return subprocess.run(
        [SYSTEM_PYTHON, str(shipped("app-fetch-secrets"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        umask=UNIT_UMASK,
    )


def test_fetch_writes_verifying_broker_urls_mode_0640(parameter_store, tmp_path):
    target = tmp_path / "secrets.env"
    done = fetch(parameter_store, target)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    host = "master.example.cache.amazonaws.com:6379"
    assert target.read_text() == (
        f"CELERY_BROKER_URL='rediss://:{TOKEN}@{host}/0?ssl_cert_reqs=required'\n"
        "DJANGO_SECRET_KEY='k3y-!%*+-.:=^_~'\n"
        f"CELERY_RESULT_BACKEND='rediss://:{TOKEN}@{host}/1?ssl_cert_reqs=required'\n"
    )
    assert TOKEN not in done.stdout + done.stderr  # it says what it wrote, never the values


def test_fetch_adds_the_ca_bundle_and_skips_results_when_disabled(parameter_store, tmp_path):
    target = tmp_path / "secrets.env"
    assert fetch(parameter_store, target, RESULT_DB="", REDIS_CA_FILE="/etc/app/ca.pem").returncode == 0
    text = target.read_text()
    assert "?ssl_cert_reqs=required&ssl_ca_certs=%2Fetc%2Fapp%2Fca.pem'" in text
    assert "CELERY_RESULT_BACKEND" not in text


def test_fetch_fails_clearly_and_writes_nothing(parameter_store, tmp_path):
    target = tmp_path / "secrets.env"
    missing = fetch(parameter_store, target, AUTH_TOKEN_PARAMETER="/django-stack/test/redis/nope")
    assert missing.returncode == 1
    assert "parameters not found: /django-stack/test/redis/nope" in missing.stderr
    no_region = subprocess.run(
        [SYSTEM_PYTHON, str(shipped("app-fetch-secrets"))],
        env={"PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_region.returncode == 2 and "AWS_REGION is not set" in no_region.stderr
    assert not target.exists()


def test_fetch_writes_the_apps_own_secrets_past_get_parameters_ten_name_limit(parameter_store, tmp_path):
    # 12 of the app's own + the stack's 2: 14 names, more than one GetParameters call takes.
    ssm = boto3.client(
        "ssm", region_name="eu-west-1", endpoint_url=parameter_store, aws_access_key_id="t", aws_secret_access_key="t"
    )
    app_secrets = {f"APP_SECRET_{n:02d}": f"/myapp/test/secret-{n:02d}" for n in range(12)}
    for name, parameter in app_secrets.items():
        ssm.put_parameter(Name=parameter, Value=f"value of {name}", Type="SecureString", Overwrite=True)
    target = tmp_path / "secrets.env"
    spec = ",".join(f"{name}={parameter}" for name, parameter in app_secrets.items())
    done = fetch(parameter_store, target, SECRET_PARAMETERS=spec)
    assert done.returncode == 0, done.stderr
    lines = target.read_text().splitlines()
    assert lines[3:] == [f"{name}='value of {name}'" for name in app_secrets]
    assert "value of" not in done.stdout + done.stderr


def test_a_missing_app_secret_fails_the_fetch_naming_it(parameter_store, tmp_path):
    target = tmp_path / "secrets.env"
    done = fetch(parameter_store, target, SECRET_PARAMETERS="EMAIL_API_KEY=/myapp/test/not-there")
    assert done.returncode == 1
    assert done.stderr.strip() == "app-fetch-secrets: parameters not found: /myapp/test/not-there"
    assert not target.exists()


# --- app-release: a venv built from the artifact's wheels ------------------------------------


def test_release_install_activate_and_rollback(tmp_path):
    root = tmp_path / "srv-app"
    for release in ("r1", "r2"):
        done = release_tool(root, "install", release, "--artifact", str(artifact(tmp_path, release)))
        assert done.returncode == 0, done.stderr
    assert release_tool(root, "list").stdout.split() == ["r1", "r2"]
    assert release_tool(root, "activate", "r2").returncode == 0
    assert os.readlink(root / "current") == "releases/r2"
    venv_python = root / "current" / "venv" / "bin" / "python"
    imported = subprocess.run(
        [str(venv_python), "-c", "import hello_release; print(hello_release.GREETING)"], capture_output=True, text=True
    )
    assert imported.stdout.strip() == "hello"
    assert not (root / "releases" / "r2" / "wheels").exists()
    assert release_tool(root, "activate", "r1").returncode == 0  # a rollback is one activate
    assert release_tool(root, "current").stdout.strip() == "r1"


# --- app-release ensure: the live release from Parameter Store, the artifact from S3 -------------

BUCKET, PREFIX = "test-releases", "releases/"


def aws_standins(endpoint: str) -> dict[str, str]:
    """What app-release.service would get: release.env's names plus the instance role's
    credentials, with both AWS endpoints pointed at moto."""
    return {
        "AWS_ENDPOINT_URL_SSM": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "eu-west-1",
        "ARTIFACT_BUCKET": BUCKET,
        "ARTIFACT_PREFIX": PREFIX,
    }


def client(endpoint: str, service: str):
    return boto3.client(
        service,
        region_name="eu-west-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def publish(endpoint: str, tmp_path: Path, *releases: str) -> None:
    """scripts/build-release.sh's output uploaded as the README says (aws s3 cp)."""
    s3 = client(endpoint, "s3")
    if BUCKET not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}:  # one moto per module
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for release in releases:
        built = artifact(tmp_path, release)
        s3.upload_file(str(built), BUCKET, f"{PREFIX}{release}.tar.gz")
        s3.upload_file(f"{built}.sha256", BUCKET, f"{PREFIX}{release}.tar.gz.sha256")


def set_live(endpoint: str, parameter: str, release: str) -> None:
    client(endpoint, "ssm").put_parameter(Name=parameter, Value=release, Type="String", Overwrite=True)


@pytest.fixture()
def live_parameter(request) -> str:
    """A parameter name of this test's own on the module's shared moto server."""
    return f"/django-stack/{request.node.name[:40]}/release"


def test_ensure_installs_the_live_release_from_s3_readable_for_the_app_user(parameter_store, live_parameter, tmp_path):
    publish(parameter_store, tmp_path, "r1", "r2")
    set_live(parameter_store, live_parameter, "r2")
    root = tmp_path / "srv-app"
    booted = release_tool(root, "ensure", RELEASE_PARAMETER=live_parameter, **aws_standins(parameter_store))
    assert booted.returncode == 0, booted.stderr
    assert f"downloading s3://{BUCKET}/{PREFIX}r2.tar.gz" in booted.stdout
    assert release_tool(root, "current").stdout.strip() == "r2"
    assert (root / "current" / "version.env").read_text() == "APP_RELEASE=r2\n"
    assert unreadable_for_others(root) == []  # under the unit's umask, like every release_tool run


def test_ensure_catches_up_with_a_release_recorded_while_the_instance_was_down(
    parameter_store, live_parameter, tmp_path
):
    root = tmp_path / "srv-app"
    for release in ("r1", "r2"):
        release_tool(root, "install", release, "--artifact", str(artifact(tmp_path, release)))
    release_tool(root, "activate", "r1")
    set_live(parameter_store, live_parameter, "r2")
    env = aws_standins(parameter_store) | {"ARTIFACT_BUCKET": ""}  # installed: nothing to download
    caught_up = release_tool(root, "ensure", RELEASE_PARAMETER=live_parameter, **env)
    assert caught_up.returncode == 0, caught_up.stderr
    assert release_tool(root, "current").stdout.strip() == "r2"
    again = release_tool(root, "ensure", RELEASE_PARAMETER=live_parameter, **env)
    assert again.returncode == 0 and again.stdout.strip() == "app-release: r2 (the live release) is active"
    set_live(parameter_store, live_parameter, "r3")  # source: ami, and the image lacks it
    no_bucket = release_tool(root, "ensure", RELEASE_PARAMETER=live_parameter, **env)
    assert no_bucket.returncode == 1 and "r3 is not installed and ARTIFACT_BUCKET is not set" in no_bucket.stderr


def test_ensure_fails_in_one_line_when_the_live_release_cannot_be_read(parameter_store, live_parameter, tmp_path):
    root = tmp_path / "srv-app"
    release_tool(root, "install", "r1", "--artifact", str(artifact(tmp_path, "r1")))
    release_tool(root, "activate", "r1")
    missing = release_tool(root, "ensure", RELEASE_PARAMETER=live_parameter, **aws_standins(parameter_store))
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"app-release: cannot read the live release from {live_parameter}: ")
    assert "ParameterNotFound" in missing.stderr and len(missing.stderr.splitlines()) == 1
    unset = release_tool(root, "ensure", **aws_standins(parameter_store))
    assert (unset.returncode, unset.stderr) == (
        1,
        "app-release: RELEASE_PARAMETER is not set (see /etc/app/release.env)\n",
    )
    set_live(parameter_store, live_parameter, "../etc")
    hostile = release_tool(root, "ensure", RELEASE_PARAMETER=live_parameter, **aws_standins(parameter_store))
    assert (hostile.returncode, hostile.stderr) == (1, "app-release: invalid release name '../etc'\n")
    assert release_tool(root, "current").stdout.strip() == "r1"  # nothing changed


def test_ensure_refuses_an_artifact_swapped_in_s3_and_keeps_the_active_release(
    parameter_store, live_parameter, tmp_path
):
    publish(parameter_store, tmp_path, "r1")
    root = tmp_path / "srv-app"
    release_tool(root, "install", "r1", "--artifact", str(tmp_path / "r1.tar.gz"))
    release_tool(root, "activate", "r1")
    s3 = client(parameter_store, "s3")
    recorded = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}r1.tar.gz.sha256")["Body"].read().decode().split()[0]
    (tmp_path / "other").mkdir()
    swapped = artifact(tmp_path / "other", "r2", {"src/x.py": b"1"})
    s3.upload_file(str(swapped), BUCKET, f"{PREFIX}r2.tar.gz")
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}r2.tar.gz.sha256", Body=f"{recorded}  r2.tar.gz\n".encode())
    set_live(parameter_store, live_parameter, "r2")
    refused = release_tool(root, "ensure", RELEASE_PARAMETER=live_parameter, **aws_standins(parameter_store))
    assert refused.returncode == 1
    warning, line = refused.stderr.splitlines()  # a value recorded before pinning: the checksum beside it
    assert warning == f"app-release: WARNING: {live_parameter} pins no digest"
    actual = hashlib.sha256(swapped.read_bytes()).hexdigest()
    assert line == f"app-release: release r2: artifact sha256 {actual}, expected {recorded}; not installed"
    assert release_tool(root, "current").stdout.strip() == "r1"
    assert release_tool(root, "list").stdout.split() == ["r1"]


def test_ensure_refuses_an_artifact_without_its_checksum_in_s3(parameter_store, live_parameter, tmp_path):
    publish(parameter_store, tmp_path)
    client(parameter_store, "s3").upload_file(str(artifact(tmp_path, "r3")), BUCKET, f"{PREFIX}r3.tar.gz")
    set_live(parameter_store, live_parameter, "r3")
    root = tmp_path / "srv-app"
    refused = release_tool(root, "ensure", RELEASE_PARAMETER=live_parameter, **aws_standins(parameter_store))
    warning, line = refused.stderr.splitlines()  # a value recorded before pinning: the checksum beside it
    assert refused.returncode == 1 and "pins no digest" in warning
    assert line.startswith(
        f"app-release: release r3: cannot read its checksum s3://{BUCKET}/{PREFIX}r3.tar.gz.sha256: "
    )
    assert "NoSuchKey" in refused.stderr or "Not Found" in refused.stderr
    assert release_tool(root, "list").stdout.split() == []


# --- the live release pins its artifact's digest (docs/release-digest.md) --------------------


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ensure_refuses_an_artifact_replaced_with_its_checksum_when_the_live_release_pins_the_digest(
    parameter_store, live_parameter, tmp_path
):
    publish(parameter_store, tmp_path, "r1", "r2")
    genuine = sha256_of(tmp_path / "r2.tar.gz")  # what build-release printed and deploy recorded
    root = tmp_path / "srv-app"
    release_tool(root, "install", "r1", "--artifact", str(tmp_path / "r1.tar.gz"))
    release_tool(root, "activate", "r1")
    # Someone who may write the bucket replaces r2 and the checksum beside it: a consistent pair.
    (tmp_path / "attacker").mkdir()
    replaced = artifact(tmp_path / "attacker", "r2", {"src/x.py": b"1"})
    s3 = client(parameter_store, "s3")
    s3.upload_file(str(replaced), BUCKET, f"{PREFIX}r2.tar.gz")
    s3.upload_file(f"{replaced}.sha256", BUCKET, f"{PREFIX}r2.tar.gz.sha256")
    set_live(parameter_store, live_parameter, f"r2@sha256:{genuine}")
    refused = release_tool(root, "ensure", RELEASE_PARAMETER=live_parameter, **aws_standins(parameter_store))
    assert refused.returncode == 1
    (line,) = refused.stderr.splitlines()
    assert line == (
        f"app-release: release r2: artifact sha256 {sha256_of(replaced)}, expected {genuine}; not installed"
    )
    assert release_tool(root, "current").stdout.strip() == "r1"
    assert release_tool(root, "list").stdout.split() == ["r1"]


def test_ensure_installs_the_artifact_the_live_release_pins_and_records_its_digest(
    parameter_store, live_parameter, tmp_path
):
    publish(parameter_store, tmp_path, "r2")
    genuine = sha256_of(tmp_path / "r2.tar.gz")
    # What lies beside it no longer matters: the pinned digest is the reference.
    client(parameter_store, "s3").put_object(Bucket=BUCKET, Key=f"{PREFIX}r2.tar.gz.sha256", Body=b"stale\n")
    set_live(parameter_store, live_parameter, f"r2@sha256:{genuine}")
    root = tmp_path / "srv-app"
    booted = release_tool(root, "ensure", RELEASE_PARAMETER=live_parameter, **aws_standins(parameter_store))
    assert (booted.returncode, booted.stderr) == (0, "")
    assert release_tool(root, "current").stdout.strip() == "r2"
    assert (root / "releases/r2/.installed").read_text() == f"r2\n{genuine}\n"
    again = release_tool(root, "ensure", RELEASE_PARAMETER=live_parameter, **aws_standins(parameter_store))
    assert (again.returncode, again.stdout.strip()) == (0, "app-release: r2 (the live release) is active")


def test_an_installed_release_is_not_activated_under_another_digest_than_its_artifacts(
    parameter_store, live_parameter, tmp_path
):
    # A reboot catch-up or a deploy's install of a release already on disk: the tree must come
    # from the artifact the live release pins, or it is refused and nothing switches.
    root = tmp_path / "srv-app"
    for release in ("r1", "r2"):
        assert release_tool(root, "install", release, "--artifact", str(artifact(tmp_path, release))).returncode == 0
    release_tool(root, "activate", "r1")
    installed_from, pinned = sha256_of(tmp_path / "r2.tar.gz"), "f" * 64
    set_live(parameter_store, live_parameter, f"r2@sha256:{pinned}")
    env = aws_standins(parameter_store) | {"ARTIFACT_BUCKET": ""}
    expected = f"app-release: release r2: installed from sha256 {installed_from}, expected {pinned}; not activated\n"
    refused = release_tool(root, "ensure", RELEASE_PARAMETER=live_parameter, **env)
    assert (refused.returncode, refused.stderr) == (1, expected)
    assert release_tool(root, "current").stdout.strip() == "r1"
    deploy_install = release_tool(root, "install", "r2", "--sha256", pinned)  # ops deploy's install script
    assert (deploy_install.returncode, deploy_install.stderr) == (1, expected)


def test_install_from_a_file_checks_the_pinned_digest_not_the_file_beside_it(tmp_path):
    root = tmp_path / "srv-app"
    built = artifact(tmp_path, "r1")
    Path(f"{built}.sha256").write_text(f"{'0' * 64}  r1.tar.gz\n")  # wrong, and ignored
    wrong = release_tool(root, "install", "r1", "--artifact", str(built), "--sha256", "e" * 64)
    assert wrong.returncode == 1
    assert wrong.stderr == (
        f"app-release: release r1: artifact sha256 {sha256_of(built)}, expected {'e' * 64}; not installed\n"
    )
    right = release_tool(root, "install", "r1", "--artifact", str(built), "--sha256", sha256_of(built))
    assert right.returncode == 0, right.stderr
    assert release_tool(root, "list").stdout.split() == ["r1"]


def test_a_live_release_pinned_to_something_that_is_no_sha256_fails_in_one_line(
    parameter_store, live_parameter, tmp_path
):
    set_live(parameter_store, live_parameter, "r2@sha256:abc")
    refused = release_tool(
        tmp_path / "srv-app", "ensure", RELEASE_PARAMETER=live_parameter, **aws_standins(parameter_store)
    )
    assert (refused.returncode, refused.stderr) == (
        1,
        f"app-release: cannot read the live release from {live_parameter}: 'r2@sha256:abc' pins no sha256\n",
    )


def test_a_live_release_recorded_before_pinning_installs_with_a_warning(parameter_store, live_parameter, tmp_path):
    # The transition (docs/release-digest.md): a value without a digest still boots, checked
    # against the checksum beside the artifact, and says so in the unit's journal.
    publish(parameter_store, tmp_path, "r2")
    set_live(parameter_store, live_parameter, "r2")
    booted = release_tool(
        tmp_path / "srv-app", "ensure", RELEASE_PARAMETER=live_parameter, **aws_standins(parameter_store)
    )
    assert booted.returncode == 0
    assert booted.stderr == f"app-release: WARNING: {live_parameter} pins no digest\n"
