"""The sample app under its production settings, in-process through Django's test client."""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec
import pytest

from config import LoadBalancerSettings, load_settings
from tests import REPO_ROOT
from tests.conftest import prod_config_values
from userdata.render import behind_load_balancer_env

# Django, its production settings and the requests, in a fresh interpreter (settings are global).
# First collectstatic into DJANGO_STATIC_ROOT, as the release build does. Each request:
# [method, path, extra WSGI environ]; answered [status, request.is_secure(), Cache-Control]. Then
# the page's stylesheet fetched as a browser would, and how many messages wait in the default
# queue (null unless the broker is kombu's in-memory one).
REQUESTS = """
import json, re, sys, django
django.setup()
from django.core.management import call_command
from django.test import Client
call_command("collectstatic", interactive=False, verbosity=0)
answers = []
for method, path, environ in json.loads(sys.argv[1]):
    response = getattr(Client(enforce_csrf_checks=True), method.lower())(path, **environ)
    answers.append([response.status_code, response.wsgi_request.is_secure(), response.get("Cache-Control")])
page = Client().get("/", HTTP_HOST="app.example.com").content.decode()
href = re.search(r'rel="stylesheet" href="([^"]+)"', page).group(1)
stylesheet = Client().get(href)
queued = None
if django.conf.settings.CELERY_BROKER_URL.startswith("memory://"):
    from proj.celery import app
    with app.connection_for_write() as connection:
        queued = connection.SimpleQueue("default").qsize()
print(json.dumps({
    "answers": answers,
    "stylesheet": [href, stylesheet.status_code, stylesheet.get("Cache-Control")],
    "queued": queued,
}))
"""
ENV = {
    "PYTHONPATH": str(REPO_ROOT / "sample_app"),
    "DJANGO_SETTINGS_MODULE": "proj.settings.production",
    "DJANGO_SECRET_KEY": "test-only-secret-key-of-some-length-0123456789",
    "DJANGO_ALLOWED_HOSTS": "app.example.com",
    "APP_RELEASE": "test",
    # A broker that refuses at once: healthz answers 503, which is still an answer.
    "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",
    "CELERY_RESULT_EXPIRES": "60",
    "CELERY_TASK_DEFAULT_QUEUE": "default",
    "CELERY_TASK_ROUTES": "{}",
    "CELERY_TASK_SOFT_TIME_LIMIT": "5",
    "CELERY_TASK_TIME_LIMIT": "10",
    "CELERY_VISIBILITY_TIMEOUT": "20",
}
IP_HOST = {"HTTP_HOST": "10.40.8.17:8000"}
SITE = {"HTTP_HOST": "app.example.com"}
# As the load balancer forwards a client's request: from the ALB's private address, with the
# client's address in X-Forwarded-For.
VIA_ALB = {**SITE, "REMOTE_ADDR": "10.40.1.23", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
HTTPS_VIA_ALB = {**VIA_ALB, "HTTP_X_FORWARDED_PROTO": "https"}
# A browser's form POST: the CSRF cookie, the same secret as the token, and its page's origin.
CSRF_SECRET = "abcdefghijklmnopqrstuvwxyzABCDEF"  # CSRF_SECRET_LENGTH letters
CSRF = {"HTTP_COOKIE": f"csrftoken={CSRF_SECRET}", "HTTP_X_CSRFTOKEN": CSRF_SECRET}
# Sent to every configuration: what changes is whether Django trusts the load balancer.
THROUGH_THE_SITE = {
    "page over https": ["GET", "/", HTTPS_VIA_ALB],
    "form post from the site": ["POST", "/", {**HTTPS_VIA_ALB, **CSRF, "HTTP_ORIGIN": "https://app.example.com"}],
    "form post from another site": ["POST", "/", {**HTTPS_VIA_ALB, **CSRF, "HTTP_ORIGIN": "https://evil.example.net"}],
}
# The requests each configuration answers, by name: [method, path, extra WSGI environ].
DIRECT = {
    "livez by ip": ["GET", "/livez", IP_HOST],
    "healthz by ip": ["GET", "/healthz", IP_HOST],
    "enqueue by ip": ["POST", "/tasks/healthcheck", IP_HOST],
    **THROUGH_THE_SITE,
}
# The instance's own probe (loopback, Django's test client's REMOTE_ADDR) first: it must enqueue
# one message, which is what shows that the requests after it would have been counted.
BEHIND_ALB = {
    "enqueue from the instance": ["POST", "/tasks/healthcheck", SITE],
    "settings from the instance": ["GET", "/app-settings", SITE],
    "enqueue via alb": ["POST", "/tasks/healthcheck", VIA_ALB],
    "settings via alb": ["GET", "/app-settings", VIA_ALB],
    "enqueue via a loopback proxy": ["POST", "/tasks/healthcheck", {**SITE, "HTTP_X_FORWARDED_FOR": "203.0.113.9"}],
    "enqueue from a private peer": ["POST", "/tasks/healthcheck", {**SITE, "REMOTE_ADDR": "10.40.1.23"}],
    **THROUGH_THE_SITE,
}
# What the prod stack (its load balancer, domain app.example.com) writes into app.env for that.
ALB_TRUST = {
    name: str(value)
    for name, value in behind_load_balancer_env(
        load_settings(prod_config_values(), stack="prod", region="eu-west-1")
    ).items()
}
# Another release's stylesheet, as app-release keeps it in the bridge during a rolling deploy.
BRIDGED = "sample/site.0123456789ab.css"
ASSETS = {
    "another release's asset": ["GET", f"/static/{BRIDGED}", {}],
    "an asset no release has": ["GET", "/static/sample/site.ffffffffffff.css", SITE],
    # A naive join would find the bridged file: scratch/static-bridge/../static-bridge/...
    "a path out of the bridge": ["GET", "/static/../static-bridge/" + BRIDGED, SITE],
}
CONFIGURATIONS = {
    "direct": (ENV, DIRECT),
    # kombu's in-memory broker: the process itself counts what was enqueued.
    "behind the alb": (ENV | ALB_TRUST | {"CELERY_BROKER_URL": "memory://"}, BEHIND_ALB | ASSETS),
}

# One xdist worker runs them all (scripts/test.sh: --dist loadgroup): the Django processes they share are made once.
pytestmark = pytest.mark.xdist_group("sample-app")


@functools.cache
def answered(configuration: str) -> dict[str, object]:
    """Each of the configuration's requests answered by one Django process (starting one is most
    of the cost): name -> (status, is_secure, Cache-Control), "stylesheet" -> (its URL, status,
    Cache-Control), and "queued" -> messages in the default queue."""
    env, requests = CONFIGURATIONS[configuration]
    with tempfile.TemporaryDirectory() as scratch:
        static_root, bridge = Path(scratch, "static"), Path(scratch, "static-bridge")
        (bridge / BRIDGED).parent.mkdir(parents=True)
        (bridge / BRIDGED).write_text("body { margin: 1rem; }\n")
        result = subprocess.run(
            [sys.executable, "-c", REQUESTS, json.dumps(list(requests.values()))],
            env={**os.environ, **env, "DJANGO_STATIC_ROOT": str(static_root), "DJANGO_STATIC_BRIDGE_ROOT": str(bridge)},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    answers = {name: tuple(answer) for name, answer in zip(requests, out["answers"], strict=True)}
    return answers | {"stylesheet": tuple(out["stylesheet"]), "queued": out["queued"]}


def status(configuration: str, request: str) -> int:
    answer = answered(configuration)[request]
    assert isinstance(answer, tuple)
    return int(answer[0])


def test_the_load_balancers_health_check_answers_its_ip_host_header_without_the_broker():
    # The target group's health check: Host is the instance's private IP and port. The broker
    # is down here: liveness still answers 200, so a Redis outage replaces no web instance.
    (path,) = (f.default for f in msgspec.structs.fields(LoadBalancerSettings) if f.name == "health_check_path")
    assert path == "/livez"
    assert DIRECT["livez by ip"][1] == path
    assert status("direct", "livez by ip") == 200


def test_the_deep_health_check_reports_the_broker_down_and_is_not_refused_for_the_host():
    assert status("direct", "healthz by ip") == 503  # answered (the broker is down), not 400


def test_other_paths_still_refuse_an_unlisted_host():
    assert status("direct", "enqueue by ip") == 400


def test_the_instance_itself_enqueues_and_reads_settings_over_loopback():
    assert status("behind the alb", "enqueue from the instance") == 202
    assert status("behind the alb", "settings from the instance") == 200


@pytest.mark.parametrize(
    "request_name",
    ["enqueue via alb", "settings via alb", "enqueue via a loopback proxy", "enqueue from a private peer"],
)
def test_a_request_through_the_load_balancer_finds_no_internal_endpoint(request_name):
    assert status("behind the alb", request_name) == 404


def test_requests_through_the_load_balancer_enqueue_nothing():
    # The instance's own request enqueued the one message; the three POSTs from outside none.
    assert answered("behind the alb")["queued"] == 1


def test_behind_the_load_balancer_a_request_it_forwarded_from_https_is_secure():
    assert set(ALB_TRUST) == {"DJANGO_SECURE_PROXY_SSL_HEADER", "DJANGO_CSRF_TRUSTED_ORIGINS"}
    assert answered("behind the alb")["page over https"][:2] == (200, True)


def test_without_the_stacks_trust_a_forwarded_proto_is_ignored():
    assert answered("direct")["page over https"][:2] == (200, False)


def test_behind_the_load_balancer_a_form_post_from_the_sites_origin_passes_the_csrf_check():
    assert status("behind the alb", "form post from the site") == 200
    assert status("behind the alb", "form post from another site") == 403


def test_without_the_stacks_trust_the_same_form_post_fails_the_origin_check():
    # What a team sees with SECURE_PROXY_SSL_HEADER and CSRF_TRUSTED_ORIGINS unset behind TLS
    # termination: "Origin checking failed - https://app.example.com does not match any trusted origins".
    assert status("direct", "form post from the site") == 403


FOREVER = "max-age=315360000, public, immutable"


def test_the_page_names_its_stylesheet_by_content_hash_and_whitenoise_serves_it_for_ever():
    href, code, cache = answered("direct")["stylesheet"]
    assert re.fullmatch(r"/static/sample/site\.[0-9a-f]{12}\.css", href)
    assert (code, cache) == (200, FOREVER)


def test_another_releases_hashed_asset_is_served_from_the_bridge():
    assert answered("behind the alb")["another release's asset"] == (200, False, FOREVER)


def test_an_asset_in_no_release_and_a_path_out_of_the_bridge_are_not_found():
    assert status("behind the alb", "an asset no release has") == 404
    assert status("behind the alb", "a path out of the bridge") == 404


def _failover_doc_block(containing: str) -> str:
    """The one Python block of docs/failover.md (what users copy) that contains `containing`."""
    doc = (REPO_ROOT / "docs/failover.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if containing in b]
    return block


def _code(node: ast.Module | ast.FunctionDef) -> str:
    """`node`'s code, its docstring left out."""
    if ast.get_docstring(node) is not None:
        node.body = node.body[1:]
    return ast.dump(node)


def _pool_handler(source: str) -> str:
    """The failover pool handler's code in `source` (its docstring left out)."""
    (handler,) = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name == "release_inherited_broker_sockets"
    ]
    return _code(handler)


def test_the_projects_broker_transport_is_the_one_docs_failover_md_has_users_copy() -> None:
    expected = _code(ast.parse(_failover_doc_block("class Transport(")))
    for package, settings in (
        ("sample_app/proj", "sample_app/proj/settings/production.py"),
        ("examples/bookshelf/src/bookshelf", "examples/bookshelf/src/bookshelf/settings.py"),
    ):
        module = REPO_ROOT / package / "broker.py"
        assert _code(ast.parse(module.read_text())) == expected, module
        setting = f'CELERY_BROKER_TRANSPORT = "{Path(package).name}.broker:Transport"'
        assert setting in (REPO_ROOT / settings).read_text(), settings


def test_the_projects_pool_handler_is_the_one_docs_failover_md_has_users_copy() -> None:
    # docs/failover.md: the handler belongs to each project's Celery module, so the two projects
    # here carry a copy each; this keeps them and what users copy the same code.
    expected = _pool_handler(_failover_doc_block("worker_process_init"))
    for module in ("sample_app/proj/celery.py", "examples/bookshelf/src/bookshelf/celery.py"):
        assert _pool_handler((REPO_ROOT / module).read_text()) == expected, module
