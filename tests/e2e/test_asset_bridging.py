"""A rolling deploy of release 2 over two web instances behind a round-robin stand-in for the
load balancer: while one instance runs release 1 and the other release 2, every asset a page
names is answered, whichever instance the request lands on (docs/django-settings.md).

Real parts: each instance boots through its own app-release.service into an APP_ROOT of its own
(release 1 from the S3 stand-in), gunicorn runs from the rendered unit, release 2 is built by
scripts/build-release.sh with another stylesheet (so another hashed name), installed on both by
the ops tool's install script and switched one instance at a time by its switch script (the
harness's systemctl restarts gunicorn as systemd would)."""

from __future__ import annotations

import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_harness.deployment import REPO, Deployment, build_release, loopback_address, upload_release, wait_until
from e2e_harness.load_balancer import RoundRobinBalancer
from e2e_harness.machine import SimulatedMachine, run_as_root
from e2e_harness.systemd import SystemdStandin
from e2e_harness.units import SYSTEM_PATH, parse_env_file

from ops.scripts import install_release_script, switch_release_script
from userdata import layout

RELEASE_2 = "2026.12.02-assets"
ASSET = re.compile(r'(?:href|src)="(/static/[^"]+)"')
TITLE = re.compile(r"<title>Sample app ([^<]+)</title>")


@pytest.fixture(scope="module")
def two_web() -> Iterator[Deployment]:
    """Two web instances booted on release 1, each bound to a loopback address of its own (its
    private IP) on the stack's port, each with its own APP_ROOT."""
    deployment = Deployment.create(web_count=2, own_app_roots=True, address_salt=7)
    try:
        for index, machine in enumerate(deployment.by_role(layout.WEB_ROLE)):
            # Two instances' 0.0.0.0:<port> on one host would collide: each binds its own address.
            env = machine.host_path(layout.GUNICORN_ENV)
            bind = f"GUNICORN_BIND={address(index)}:{deployment.web_port}"
            env.write_text(re.sub(r"(?m)^GUNICORN_BIND=.*$", bind, env.read_text()))
            machine.boot()
        for index in range(2):
            wait_for_live(address(index), deployment.web_port)
        yield deployment
    finally:
        deployment.close()


def address(index: int) -> str:
    return loopback_address(40 + index)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, ""


def wait_for_live(host: str, port: int) -> None:
    def live() -> bool:
        try:
            return get(f"http://{host}:{port}/livez")[0] == 200
        except OSError:
            return False

    wait_until(live, timeout=90, interval=0.3)


def build_release_2(deployment: Deployment) -> str:
    """The sample project with one more rule in its stylesheet, built and uploaded as release 2;
    returns the artifact's digest as the builder wrote it (what deploy pins)."""
    source = deployment.base / "release-2-source"
    shutil.copytree(REPO / "sample_app", source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    stylesheet = source / "myapp/static/sample/site.css"
    stylesheet.write_text(stylesheet.read_text() + "h1 { color: #036; }\n")
    artifact = build_release(RELEASE_2, deployment.base / "artifacts", source)
    (release_env,) = {m.host_path(layout.RELEASE_ENV).read_text() for m in deployment.by_role(layout.WEB_ROLE)}
    upload_release(deployment.store, parse_env_file(release_env), artifact)
    return Path(f"{artifact}.sha256").read_text().split()[0]


def as_root(deployment: Deployment, machine: SimulatedMachine, script: str, **env: str) -> str:
    """An ops script as SSM runs it on the instance: root, the instance role's credentials."""
    role = {"PATH": SYSTEM_PATH, **deployment.site.instance_environment, **env}
    result = run_as_root(machine, ["/usr/bin/env", *(f"{k}={v}" for k, v in role.items()), "/bin/sh", "-c", script])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


class Browser:
    """Loads the page through the load balancer and then every asset it names, until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pages: dict[str, int] = {}  # release -> pages seen
        self.assets: list[tuple[str, str, int]] = []  # (page's release, asset, status)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.browse, daemon=True)
        self.thread.start()

    def browse(self) -> None:
        while not self.stopped.is_set():
            status, page = get(self.url + "/")
            if status != 200:
                self.assets.append(("?", "/", status))
                continue
            title = TITLE.search(page)
            release = title.group(1) if title else "?"
            self.pages[release] = self.pages.get(release, 0) + 1
            for asset in ASSET.findall(page):
                self.assets.append((release, asset, get(self.url + asset)[0]))

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=60)

    def browse_for(self, seconds: float) -> None:
        self.stopped.wait(seconds)


def test_a_rolling_deploy_answers_every_asset_of_either_release(two_web: Deployment, report) -> None:
    web = two_web.by_role(layout.WEB_ROLE)
    release_1 = two_web.release
    digest_2 = build_release_2(two_web)
    balancer = RoundRobinBalancer([(address(index), two_web.web_port) for index in range(2)])
    standins = [SystemdStandin(machine, machine.root / "systemctl-bin") for machine in web]
    browser = Browser(f"http://127.0.0.1:{balancer.port}")
    try:
        browser.browse_for(2)
        # ops deploy: install on every instance first (nothing restarts) ...
        for machine in web:
            assert f"installed {RELEASE_2}" in as_root(two_web, machine, install_release_script(RELEASE_2, digest_2))
        browser.browse_for(2)
        # ... then switch one at a time; between the two, each release's pages are served.
        for index, (machine, standin) in enumerate(zip(web, standins, strict=True)):
            switch = switch_release_script(layout.WEB_ROLE, RELEASE_2)
            assert f"{RELEASE_2} is active" in as_root(
                two_web, machine, switch, **standin.environment(layout.GUNICORN_UNIT)
            )
            wait_for_live(address(index), two_web.web_port)
            browser.browse_for(5)
    finally:
        browser.stop()
        balancer.close()
        for standin in standins:
            standin.close()

    missing = [(release, asset, status) for release, asset, status in browser.assets if status != 200]
    report(
        f"rolling deploy behind the round robin: pages by release {browser.pages}, "
        f"{len(browser.assets)} asset requests, {len(missing)} not answered 200"
    )
    assert missing == [], f"{len(missing)} of {len(browser.assets)} asset requests failed: {missing[:10]}"
    # The deploy really was mixed: pages of both releases, each naming its own stylesheet.
    assert browser.pages.get(release_1, 0) > 0 and browser.pages.get(RELEASE_2, 0) > 0, browser.pages
    stylesheets = {release: {a for r, a, _ in browser.assets if r == release} for release in (release_1, RELEASE_2)}
    assert len(stylesheets[release_1]) == len(stylesheets[RELEASE_2]) == 1
    assert stylesheets[release_1] != stylesheets[RELEASE_2]
    # And both instances answered assets: the round robin sent them across.
    assert {index for path, index in balancer.routed if path.startswith("/static/")} == {0, 1}
