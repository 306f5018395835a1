"""Property tests: every server kind returns every byte, in order, to every client.

Hypothesis draws the messages (sizes from empty to tens of kilobytes), how each client
chops its stream into ``send`` calls, and how many clients talk at once.  Whatever it
draws, each client must read back exactly what it sent -- nothing lost, duplicated,
reordered or mixed with another client's bytes.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import HOST, TIMEOUT, recv_all, serving
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minisocket


class Echo(minisocket.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class ProtocolEcho(minisocket.ProtocolRequestHandler):
    def data_received(self, data: bytes) -> None:
        self.send(data)


KINDS = {
    "sync": (minisocket.TCPServer, Echo),
    "threaded": (minisocket.ThreadingTCPServer, Echo),
    "forking": (minisocket.ForkingTCPServer, Echo),
    "pool": (minisocket.ThreadPoolTCPServer, Echo),
    "select": (minisocket.SelectorTCPServer, ProtocolEcho),
}


@pytest.fixture(scope="module", params=sorted(KINDS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    server_class, handler = KINDS[request.param]
    with serving(server_class((HOST, 0), handler)) as running:
        yield request.param, running


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split *data* at the given offsets (taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def exchange(address: Any, chunks: list[bytes]) -> bytes:
    """Send the chunks from one thread while reading everything back in this one."""
    with socket.create_connection(address, timeout=TIMEOUT) as client:

        def writer() -> None:
            for chunk in chunks:
                client.sendall(chunk)
            client.shutdown(socket.SHUT_WR)

        sending = threading.Thread(target=writer)
        sending.start()
        received = recv_all(client)
        sending.join(TIMEOUT)
    return received


client_script = st.tuples(
    st.binary(min_size=0, max_size=40_000),
    st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clients=st.lists(client_script, min_size=1, max_size=4))
def test_every_byte_comes_back_in_order(server: tuple[str, Any], clients: list[Any]) -> None:
    kind, running = server
    scripts = [cut(data, cuts) for data, cuts in clients]
    results: list[bytes | None] = [None] * len(scripts)

    def run(i: int) -> None:
        results[i] = exchange(running.server_address, scripts[i])

    if kind == "sync":  # one client at a time is all a synchronous server can do
        for i in range(len(scripts)):
            run(i)
    else:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(scripts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
    assert results == [data for data, _ in clients]
