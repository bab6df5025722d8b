"""The ports the harnesses give the servers they start (tests/e2e/e2e_harness/ports.py): never one
another server holds, never one twice, never one the kernel can hand out by itself."""

from __future__ import annotations

import socket

import pytest
from e2e_harness import ports


class Picks:
    """Stands in for the port module's random generator: picks the given ports, in order."""

    def __init__(self, *picks: int) -> None:
        self.picks = list(picks)

    def choice(self, _ports: range) -> int:
        return self.picks.pop(0)


@pytest.fixture
def two_free_ports() -> list[int]:
    found: list[int] = []
    for port in ports.candidate_ports():
        if ports.is_free(port) and port not in ports._handed_out:
            found.append(port)
        if len(found) == 2:
            return found
    raise AssertionError("no two free ports in the candidate range")


def test_ports_come_from_outside_the_kernels_ephemeral_range_and_never_repeat():
    handed_out = [ports.free_port() for _ in range(50)]
    assert len(set(handed_out)) == 50
    assert all(port >= ports.LOWEST and port not in ports.ephemeral_range() for port in handed_out)


def test_a_port_a_server_listens_on_is_passed_over(monkeypatch, two_free_ports):
    held, free = two_free_ports
    with socket.socket() as server:
        server.bind(("127.0.0.1", held))  # as moto binds: one address, not 0.0.0.0
        server.listen()
        monkeypatch.setattr(ports, "_random", Picks(held, free))
        assert ports.free_port() == free


def test_a_port_handed_out_once_is_not_handed_out_again(monkeypatch, two_free_ports):
    first, second = two_free_ports
    monkeypatch.setattr(ports, "_random", Picks(first, first, second))
    # Nothing binds `first` in between: the kernel would hand it out again (CI, 2026-12-06).
    assert [ports.free_port(), ports.free_port()] == [first, second]


def test_xdist_workers_get_disjoint_slices():
    candidates = range(10_000, 32_768)
    slices = [set(ports.worker_slice(candidates, f"gw{n}", 3)) for n in range(3)]
    assert all(a.isdisjoint(b) for i, a in enumerate(slices) for b in slices[i + 1 :])
    assert all(len(part) == len(candidates) // 3 for part in slices)
    assert ports.worker_slice(candidates, "", 1) == candidates  # outside xdist: all of it


def test_the_ephemeral_range_is_read_from_the_kernels_setting(tmp_path):
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("32768\t60999\n")
    assert ports.ephemeral_range(setting) == range(32768, 61000)
