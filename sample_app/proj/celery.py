"""The Celery app: every CELERY_* Django setting configures it (see proj/settings/production.py)."""

import os
import socket

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings.production")

app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def release_inherited_broker_sockets(**_: object) -> None:
    """A forked pool child must not keep the worker's broker sockets open: after a broker
    failover the worker could block for good reading its reconnected connection
    (docs/failover.md). Each is matched by the broker's port (a failover moves the address) and
    pointed at /dev/null, so the child holds no socket and no fd number is freed under an object."""
    broker = app.connection_for_read()
    port = broker.port or broker.transport.default_port
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue  # not a socket: billiard's pipes, files
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None
        sock.detach()
        if isinstance(peer, tuple) and peer[1] == port:
            os.dup2(devnull, fd)
    os.close(devnull)
