"""One guest connection to a host service: qemu's user network runs this per connection the guest
opens to a forwarded address (`guestfwd=tcp:ADDR:PORT-cmd:python3 relay.py HOST PORT`), with the
connection on stdin/stdout, and it relays the bytes to HOST:PORT on the host's loopback until
either side closes. Standard library only; nothing is logged or kept.

    python3 scripts/vm/relay.py HOST PORT
"""

from __future__ import annotations

import selectors
import socket
import sys


def relay(guest: socket.socket, host: socket.socket) -> None:
    selector = selectors.DefaultSelector()
    selector.register(guest, selectors.EVENT_READ, host)
    selector.register(host, selectors.EVENT_READ, guest)
    while True:
        for key, _ in selector.select():
            source: socket.socket = key.fileobj  # type: ignore[assignment]
            data = source.recv(65536)
            if not data:
                return
            key.data.sendall(data)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    guest = socket.socket(fileno=0)
    with socket.create_connection((host, port), timeout=30) as upstream:
        upstream.settimeout(None)
        relay(guest, upstream)


if __name__ == "__main__":
    main()
