"""The VM test images: built once per machine and input, then reused by every clone.

    .venv/bin/python scripts/vm/image.py [--cache-dir DIR]     prints the image directory

The image directory is <cache>/images/<key>/ where <key> hashes every input of the build (the
builder, the files baked into the guest, the sample project, the release tooling, the mirror,
where the rendered stack says its releases live). It holds two disks: base.img, the stock OS
(an instance on the default s3 path installs its release at boot), and ami.img, the same plus
the stack's release installed by app-release (a baked AMI, app.source: ami), and the public half
of the throwaway key the build signed the stand-in agent packages with (agent-signing-key.asc:
the keyring the boots' user-data carries instead of AWS's).
Nothing else invalidates it, so a fresh clone on the same machine reuses it and a new machine
builds it cold (about two minutes). A lock serialises concurrent builders.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from scripts.vm.gpg import gpg, throwaway_home
from userdata import layout

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = Path(os.environ.get("DJANGO_STACK_VM_CACHE", "/var/cache/django-stack/vm"))
# The release the ops tool deploys in the "replaced instance boots the live release" scenario:
# its artifact sits in the S3 stand-in next to the stack's configured release.
NEXT_RELEASE = "vm-next"
# A release of examples/bookshelf (a project of its own layout with PostgreSQL migrations), built
# by the builder teams use (python -m ops build-release); the s3-path boots of that project take it.
EXAMPLE_PROJECT = REPO / "examples" / "bookshelf"
EXAMPLE_RELEASE = "vm-bookshelf"
# What the guest's redis-server certificate names; the mocked ElastiCache endpoint the program
# renders into the user-data. /etc/hosts in the guest points it at loopback.
REDIS_HOST = "master.vm-redis.test"
# The stack whose parameter names the Parameter Store stand-in answers.
STACK = "prod"
KEEP_IMAGES = 3
# The stand-in packages of AWS's agents (scripts/vm/guest/<package>/), built and signed per image.
AGENT_PACKAGES = (layout.SSM_AGENT_PACKAGE, layout.CLOUDWATCH_AGENT_PACKAGE)
SIGNING_KEY = "agent-signing-key.asc"
FALLBACK_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class ReleaseStore:
    """Where the rendered stack's instances look for artifacts (their release.env) and which
    release they are configured with."""

    region: str
    bucket: str
    prefix: str
    release: str

    def artifact_key(self, release: str) -> str:
        # app-release's own layout: s3://$ARTIFACT_BUCKET/$ARTIFACT_PREFIX<release>.tar.gz
        return f"{self.bucket}/{self.prefix}{release}.tar.gz"


def releases_in_s3(store: ReleaseStore) -> tuple[str, ...]:
    """The releases whose artifacts the guest's S3 stand-in serves."""
    return (store.release, NEXT_RELEASE, EXAMPLE_RELEASE)


@dataclass(frozen=True)
class Image:
    directory: Path
    key: str
    built_seconds: float | None  # None: taken from the cache

    @property
    def base(self) -> Path:
        return self.directory / "base.img"

    @property
    def ami(self) -> Path:
        return self.directory / "ami.img"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    def artifact_sha256(self, release: str) -> str:
        """The digest of the release artifact the guest's S3 stand-in serves (what deploy pins)."""
        return (self.directory / f"{release}.tar.gz.sha256").read_text().split()[0]

    @property
    def agent_keyring(self) -> str:
        """The public key the stand-in agent packages are signed with (armored)."""
        return (self.directory / SIGNING_KEY).read_text()


def machine_mirror() -> str:
    """The Debian mirror this machine's apt already uses (deb822 or one-line format)."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = path.read_text(errors="replace") if path.is_file() else ""
        found = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+/debian)/?\s+bookworm\b", text, re.M
        )
        if found:
            return found.group(1)
    return FALLBACK_MIRROR


def input_files() -> list[Path]:
    roots = [HERE / "guest", REPO / "sample_app", EXAMPLE_PROJECT]
    singles = [
        HERE / "image.py",
        HERE / "build-rootfs.sh",
        HERE / "gpg.py",
        REPO / "userdata/files/app-release",
        REPO / "userdata/files/install-aws-agent",
        REPO / "userdata/layout.py",
        REPO / "scripts/build-release.sh",
        REPO / "ops/build_release.py",
    ]
    found = [
        p
        for root in roots
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    return sorted(found + singles)


def cache_key(mirror: str, store: ReleaseStore) -> str:
    digest = hashlib.sha256(f"mirror={mirror}\n{store}\n".encode())
    for path in input_files():
        digest.update(f"{path.relative_to(REPO)}\n".encode())
        digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode())
    return digest.hexdigest()[:20]


def build_artifact(release: str, into: Path) -> Path:
    """A release artifact, made by the same script deploys use (its wheels are resolved by
    Debian 12's /usr/bin/python3, the guest's interpreter); the example project's by the release
    builder for any project, for the guest's architecture."""
    if release == EXAMPLE_RELEASE:
        command = [sys.executable, "-m", "ops", "build-release", "--app", str(EXAMPLE_PROJECT), "--release", release]
        subprocess.run([*command, "--architecture", "x86_64", "--out", str(into)], check=True, capture_output=True)
        return into / f"{release}.tar.gz"
    out = subprocess.run(
        ["bash", str(REPO / "scripts/build-release.sh"), release, str(into)],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def agent_package_key(region: str, package: str = layout.SSM_AGENT_PACKAGE) -> str:
    """Where install-aws-agent fetches an agent from (the VM stacks' pinned release, x86_64
    guest), by its own URL logic; its signature is this key + ".sig"."""
    package_url = runpy.run_path(str(REPO / "userdata/files/install-aws-agent"))["package_url"]
    version = layout.AGENT_VERSIONS[package]
    return str(package_url(package, version, region, "x86_64", "https://stand-in")).removeprefix("https://stand-in/")


def build_agent_package(package: str, into: Path, signing_home: Path) -> None:
    """A local package named like AWS's with the same unit (and, for the CloudWatch agent, the
    same ctl), from guest/<package>, with a detached signature by the image's throwaway key."""
    with tempfile.TemporaryDirectory(prefix="vm-agent-") as scratch:
        tree = Path(scratch) / "pkg"
        shutil.copytree(HERE / "guest" / package, tree)
        into.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(into)], check=True)
    gpg(signing_home, "--detach-sign", "--output", f"{into}.sig", str(into))


def stand_in_objects(store: ReleaseStore, into: Path, signing_home: Path) -> None:
    """What the guest's S3 stand-in serves: the releases' artifacts (each with the .sha256 that
    the builders write beside it and app-release checks) and the signed agent packages."""
    for release in releases_in_s3(store):
        target = into / store.artifact_key(release)
        target.parent.mkdir(parents=True, exist_ok=True)
        # artifactPrefix is directory-shaped (`releases/`), so the script's file is the key.
        built = build_artifact(release, target.parent)
        assert built == target, f"{built} is not at the key app-release downloads ({target})"
    for package in AGENT_PACKAGES:
        build_agent_package(package, into / agent_package_key(store.region, package), signing_home)


@contextmanager
def throwaway_signing_key() -> Iterator[Path]:
    """A GNUPGHOME with a fresh signing key that lives only for this build (its gpg-agent too)."""
    with throwaway_home("vm-signing-") as home:
        gpg(home, "--quick-gen-key", "django-stack vm-test agent signer <vm-test@invalid>", "ed25519", "sign", "never")
        yield home


def build(target: Path, mirror: str, cache: Path, store: ReleaseStore) -> None:
    with tempfile.TemporaryDirectory(prefix="vm-objects-") as scratch, throwaway_signing_key() as signing_home:
        objects = Path(scratch) / "s3"
        stand_in_objects(store, objects, signing_home)
        subprocess.run(
            [
                "bash",
                str(HERE / "build-rootfs.sh"),
                str(target),
                str(objects),
                str(objects / store.artifact_key(store.release)),
                store.release,
                mirror,
                str(cache / "debs"),
                REDIS_HOST,
                STACK,
            ],
            check=True,
        )
        (target / SIGNING_KEY).write_text(gpg(signing_home, "--armor", "--export"))
        for release in releases_in_s3(store):
            shutil.copyfile(objects / f"{store.artifact_key(release)}.sha256", target / f"{release}.tar.gz.sha256")


def prune(images: Path, keep: str) -> None:
    """Keeps the newest few images (other branches may be using theirs)."""
    others = sorted(
        (p for p in images.iterdir() if p.is_dir() and p.name != keep and "." not in p.name),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in others[KEEP_IMAGES - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def ensure_image(store: ReleaseStore, cache: Path = DEFAULT_CACHE) -> Image:
    mirror = machine_mirror()
    key = cache_key(mirror, store)
    images = cache / "images"
    directory = images / key
    images.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (directory / "manifest.json").is_file():
            os.utime(directory)
            return Image(directory, key, None)
        started = time.monotonic()
        for stale in images.glob("*.partial"):  # left by an interrupted build; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        partial = images / f"{key}.partial"
        try:
            build(partial, mirror, cache, store)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        seconds = round(time.monotonic() - started, 1)
        manifest = {
            "key": key,
            "mirror": mirror,
            "store": asdict(store),
            "next_release": NEXT_RELEASE,
            "redis_host": REDIS_HOST,
            "build_seconds": seconds,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        partial.rename(directory)
        prune(images, key)
        return Image(directory, key, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/vm/image.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"machine-wide image cache (default {DEFAULT_CACHE})"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("image.py: building the image needs root (debootstrap, chroot)", file=sys.stderr)
        return 2
    from scripts.vm.boot import vm_stack  # the image serves the stack as the program renders it

    image = ensure_image(vm_stack().store, args.cache_dir)
    how = f"built in {image.built_seconds} s" if image.built_seconds is not None else "cached"
    print(f"{image.directory} ({how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
