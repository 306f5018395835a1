"""Layer 05: ThreadingMixIn and ForkingMixIn."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Any

import pytest
from conftest import HOST, TIMEOUT, recv_all, serving

from minisocket import (
    BaseRequestHandler,
    ForkingTCPServer,
    ThreadingMixIn,
    ThreadingTCPServer,
)
from minisocket.mixins import _ThreadList


def exchange(address: Any, payload: bytes = b"") -> bytes:
    with socket.create_connection(address, timeout=TIMEOUT) as client:
        if payload:
            client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        return recv_all(client)


class Gate(BaseRequestHandler):
    """Replies once the server's gate opens; tells whether it saw the gate closed."""

    def handle(self) -> None:
        self.server.entered.release()
        self.server.gate.wait(TIMEOUT)
        self.request.sendall(b"through")


def gated(cls: type[Any], **attrs: Any) -> Any:
    server = cls((HOST, 0), Gate)
    server.gate = threading.Event()
    server.entered = threading.Semaphore(0)
    for name, value in attrs.items():
        setattr(server, name, value)
    return server


def test_threading_serves_clients_concurrently() -> None:
    with serving(gated(ThreadingTCPServer)) as server:
        results: list[bytes] = []
        clients = [
            threading.Thread(target=lambda: results.append(exchange(server.server_address)))
            for _ in range(5)
        ]
        for c in clients:
            c.start()
        # All five handlers are inside handle() at the same time, before any may leave.
        for _ in range(5):
            assert server.entered.acquire(timeout=TIMEOUT)
        server.gate.set()
        for c in clients:
            c.join(TIMEOUT)
        assert results == [b"through"] * 5


def test_threads_are_reaped_as_the_list_grows() -> None:
    class Quick(BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"ok")

    with serving(ThreadingTCPServer((HOST, 0), Quick)) as server:
        for _ in range(60):
            assert exchange(server.server_address) == b"ok"
        assert isinstance(server._threads, _ThreadList)
        assert len(server._threads) < 60
    assert len(server._threads) == 0  # server_close joined what was left


def test_thread_list_keeps_live_threads() -> None:
    threads = _ThreadList()
    stop = threading.Event()
    live = [threading.Thread(target=stop.wait) for _ in range(20)]
    for t in live:
        t.start()
        threads.append(t)
    assert len(threads) == 20  # nothing finished, nothing dropped
    stop.set()
    threads.join_all()
    assert not threads and not any(t.is_alive() for t in live)


def test_daemon_threads_are_not_tracked() -> None:
    server = gated(ThreadingTCPServer, daemon_threads=True)
    server.gate.set()
    with serving(server):
        assert exchange(server.server_address) == b"through"
    assert "_threads" not in vars(server)
    assert ThreadingMixIn._threads == ()


@pytest.mark.parametrize("block_on_close", [True, False])
def test_block_on_close(block_on_close: bool) -> None:
    server = gated(ThreadingTCPServer, block_on_close=block_on_close)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    client = socket.create_connection(server.server_address, timeout=TIMEOUT)
    assert server.entered.acquire(timeout=TIMEOUT)
    server.shutdown()
    thread.join(TIMEOUT)
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (server.server_close(), closed.set()))
    closer.start()
    # With block_on_close, server_close waits for the handler still in handle().
    assert closed.wait(0.2) is not block_on_close
    server.gate.set()
    closer.join(TIMEOUT)
    assert recv_all(client) == b"through"
    client.close()
    for t in threading.enumerate():
        if t.name.endswith("(process_request_thread)"):
            t.join(TIMEOUT)


class Pid(BaseRequestHandler):
    def handle(self) -> None:
        time.sleep(float(self.request.recv(16) or 0))
        self.request.sendall(str(os.getpid()).encode())


def test_forking_serves_in_a_child_and_reaps_it() -> None:
    with serving(ForkingTCPServer((HOST, 0), Pid)) as server:
        pids = {exchange(server.server_address, b"0") for _ in range(3)}
        assert str(os.getpid()).encode() not in pids and len(pids) == 3
    assert not server.active_children  # server_close waited for every child


def test_forking_respects_max_children() -> None:
    class Limited(ForkingTCPServer):
        max_children = 2
        most_seen = 0

        def process_request(self, request: Any, client_address: Any) -> None:
            super().process_request(request, client_address)
            self.most_seen = max(self.most_seen, len(self.active_children or ()))

    with serving(Limited((HOST, 0), Pid)) as server:
        results: list[bytes] = []
        clients = [
            threading.Thread(target=lambda: results.append(exchange(server.server_address, b"0.2")))
            for _ in range(5)
        ]
        for c in clients:
            c.start()
        for c in clients:
            c.join(TIMEOUT)
        assert len(results) == 5 and all(r.isdigit() for r in results)
    assert server.most_seen == 2


def test_forking_never_reaps_a_child_it_did_not_start() -> None:
    foreign = os.fork()
    if foreign == 0:
        time.sleep(0.3)
        os._exit(7)
    try:
        server = ForkingTCPServer((HOST, 0), Pid)
        server.max_children = 1  # forces the capacity wait, where stdlib uses waitpid(-1)
        with serving(server):
            for _ in range(3):
                exchange(server.server_address, b"0.1")
    finally:
        _, status = os.waitpid(foreign, 0)  # ChildProcessError if the server stole it
    assert os.waitstatus_to_exitcode(status) == 7


def test_forking_shutdown_interrupts_the_capacity_wait() -> None:
    server = ForkingTCPServer((HOST, 0), Pid)
    server.max_children = 1
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    slow = socket.create_connection(server.server_address, timeout=TIMEOUT)
    slow.sendall(b"60")  # the only child sleeps: the loop waits at capacity
    deadline = time.monotonic() + TIMEOUT
    while not server.active_children and time.monotonic() < deadline:
        time.sleep(0.005)
    (child,) = server.active_children
    try:
        server.shutdown()
        thread.join(TIMEOUT)
        # shutdown() returned while the child still runs: it did not wait for it.
        assert os.waitpid(child, os.WNOHANG) == (0, 0)
        assert not thread.is_alive()
    finally:
        os.kill(child, signal.SIGKILL)
        server.server_close()  # reaps the child
        slow.close()
    assert not server.active_children
