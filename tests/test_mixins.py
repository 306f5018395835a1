"""Layer 05: ThreadingMixIn and ForkingMixIn."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

import pytest
from conftest import HOST, TIMEOUT, Steps, recv_all, serving

from minisocket import BaseRequestHandler, ForkingTCPServer, ThreadingTCPServer


def exchange(address: Any, payload: bytes = b"") -> bytes:
    with socket.create_connection(address, timeout=TIMEOUT) as client:
        if payload:
            client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        return recv_all(client)


class Gate(BaseRequestHandler):
    """Replies once the server's gate opens."""

    def handle(self) -> None:
        self.server.entered.release()
        self.server.gate.wait(TIMEOUT)
        self.request.sendall(b"through")


def gated(cls: type[Any] = ThreadingTCPServer, **attrs: Any) -> Any:
    server = cls((HOST, 0), Gate)
    server.gate = threading.Event()
    server.entered = threading.Semaphore(0)
    server.tracer = Steps()
    for name, value in attrs.items():
        setattr(server, name, value)
    return server


def test_threading_serves_clients_concurrently() -> None:
    with serving(gated()) as server:
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


def start_one_request(server: Any) -> tuple[threading.Thread, socket.socket]:
    """serve_forever on a thread, one client whose handler is inside handle()."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    client = socket.create_connection(server.server_address, timeout=TIMEOUT)
    assert server.entered.acquire(timeout=TIMEOUT)
    server.shutdown()
    thread.join(TIMEOUT)
    return thread, client


@pytest.mark.parametrize("block_on_close", [True, False])
def test_block_on_close(block_on_close: bool) -> None:
    server = gated(block_on_close=block_on_close, close_grace=None)
    _, client = start_one_request(server)
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (server.server_close(), closed.set()))
    closer.start()
    if block_on_close:  # server_close waits for the handler still in handle() ...
        assert not closed.wait(0.2)  # (a bound on a wait that must not end)
    else:  # ... or returns while it is still there
        assert closed.wait(TIMEOUT) and server.tracer.count("finish") == 0
    server.gate.set()
    closer.join(TIMEOUT)
    assert recv_all(client) == b"through"
    client.close()
    server.tracer.wait("close_request")


def test_server_close_gives_an_idle_client_close_grace_then_ends_its_connection() -> None:
    class Idle(BaseRequestHandler):
        def handle(self) -> None:
            self.server.entered.release()
            self.request.recv(1)  # the client never sends: socketserver would wait forever

    server = gated(close_grace=0.05)
    server.RequestHandlerClass = Idle
    _, client = start_one_request(server)
    server.server_close()  # returns: the connection was shut down after the grace
    assert recv_all(client) == b""
    client.close()


def test_server_close_bounds_the_wait_for_a_handler_stuck_off_the_socket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Shutting the connection down cannot wake a handler that is not reading it: after
    close_grace twice, server_close logs the stuck thread and returns."""
    server = gated(close_grace=0.05)
    _, client = start_one_request(server)  # Gate waits on the gate, not on the socket
    with caplog.at_level(logging.WARNING, logger="minisocket"):
        server.server_close()
    assert any("not waiting for handler thread" in r.getMessage() for r in caplog.records)
    server.gate.set()
    client.close()
    server.tracer.wait("close_request")


def test_daemon_threads_do_not_block_close_but_are_cut_after_the_grace() -> None:
    server = gated(daemon_threads=True, close_grace=0.05)
    server.RequestHandlerClass = type(
        "Idle",
        (BaseRequestHandler,),
        {"handle": lambda self: (self.server.entered.release(), self.request.recv(1))},
    )
    _, client = start_one_request(server)
    server.server_close()
    assert recv_all(client) == b""  # after close_grace, in the background
    client.close()


def test_a_forked_child_closing_the_server_leaves_the_parents_connections() -> None:
    server = gated()
    _, client = start_one_request(server)
    child = os.fork()
    if child == 0:  # a child of the process (not of the server) closes its copy
        server.close_grace = 0.0
        server.server_close()
        os._exit(0)
    os.waitpid(child, 0)
    server.gate.set()  # the parent's handler is still there, and can still reply
    assert recv_all(client) == b"through"
    client.close()
    server.server_close()


class Pid(BaseRequestHandler):
    """Replies with the serving process's pid -- after being killed, if asked to wait.

    (A child cannot be told to finish by closing a client socket: every child forked
    from the test process holds a copy of every socket the test has open.)
    """

    def handle(self) -> None:
        if self.request.recv(16) == b"wait":
            time.sleep(TIMEOUT)  # until the test kills this child
        self.request.sendall(str(os.getpid()).encode())


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def test_forking_serves_in_a_child_and_reaps_it() -> None:
    with serving(ForkingTCPServer((HOST, 0), Pid)) as server:
        pids = {exchange(server.server_address, b"go") for _ in range(3)}
        assert str(os.getpid()).encode() not in pids and len(pids) == 3
    assert not server.active_children  # server_close waited for every child


def test_forking_at_max_children_stops_accepting_until_a_child_exits() -> None:
    server = ForkingTCPServer((HOST, 0), Pid)
    server.max_children = 2
    server.tracer = steps = Steps()
    with serving(server):
        holders = [
            socket.create_connection(server.server_address, timeout=TIMEOUT) for _ in range(2)
        ]
        for holder in holders:
            holder.sendall(b"wait")
        steps.wait("pause_accepting")  # two children alive: new clients wait in the backlog
        waiting = threading.Thread(target=lambda: exchange(server.server_address, b"go"))
        waiting.start()
        assert steps.count("get_request") == 2
        first, second = sorted(server.active_children or ())
        kill(first)  # one child exits ...
        steps.wait("resume_accepting")  # ... and the third client is accepted
        waiting.join(TIMEOUT)
        assert not waiting.is_alive() and steps.count("get_request") == 3
        kill(second)
        for holder in holders:
            holder.close()


def test_forking_never_reaps_a_child_it_did_not_start() -> None:
    read_end, write_end = os.pipe()
    foreign = os.fork()
    if foreign == 0:
        os.close(write_end)
        os.read(read_end, 1)  # exits when the test says so
        os._exit(7)
    os.close(read_end)
    try:
        server = ForkingTCPServer((HOST, 0), Pid)
        server.max_children = 1  # the capacity wait, where socketserver uses waitpid(-1)
        with serving(server):
            for _ in range(3):
                exchange(server.server_address, b"go")
        os.close(write_end)
    finally:
        _, status = os.waitpid(foreign, 0)  # ChildProcessError if the server stole it
    assert os.waitstatus_to_exitcode(status) == 7


def test_forking_shutdown_does_not_wait_for_a_child_at_capacity() -> None:
    server = ForkingTCPServer((HOST, 0), Pid)
    server.max_children = 1
    server.tracer = steps = Steps()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    slow = socket.create_connection(server.server_address, timeout=TIMEOUT)
    slow.sendall(b"wait")  # the only child waits for us: the server is at capacity
    steps.wait("pause_accepting")
    (child,) = server.active_children or ()
    try:
        server.shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert os.waitpid(child, os.WNOHANG) == (0, 0)  # shutdown() did not wait for it
    finally:
        kill(child)
        server.server_close()  # reaps the child
        slow.close()
    assert not server.active_children
