"""ThreadPoolMixIn: bounded workers, bounded queue, clean refusal."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import pytest
from conftest import HOST, REQUEST_STEPS, TIMEOUT, recv_all, serving

from minisocket import (
    BaseRequestHandler,
    ThreadPoolMixIn,
    ThreadPoolTCPServer,
    TraceRecorder,
    UDPServer,
)


class Gate(BaseRequestHandler):
    def handle(self) -> None:
        server = self.server
        with server.lock:
            server.active += 1
            server.most_active = max(server.most_active, server.active)
        server.entered.release()
        server.gate.wait(TIMEOUT)
        self.request.sendall(threading.current_thread().name.encode())
        with server.lock:
            server.active -= 1


def make(**attrs: Any) -> ThreadPoolTCPServer:
    server = ThreadPoolTCPServer((HOST, 0), Gate)
    server.gate, server.entered = threading.Event(), threading.Semaphore(0)
    server.lock, server.active, server.most_active = threading.Lock(), 0, 0
    for name, value in attrs.items():
        setattr(server, name, value)
    return server


def test_at_most_max_workers_at_once_and_threads_are_reused() -> None:
    with serving(make(max_workers=3)) as server:
        results: list[bytes] = []
        clients = [
            threading.Thread(target=lambda: results.append(exchange(server))) for _ in range(9)
        ]
        for c in clients:
            c.start()
        for _ in range(3):
            assert server.entered.acquire(timeout=TIMEOUT)
        assert not server.entered.acquire(timeout=0.2)  # a fourth cannot start
        server.gate.set()
        for c in clients:
            c.join(TIMEOUT)
    assert server.most_active == 3
    assert len(results) == 9 and {r.decode() for r in results} <= {
        f"pool-worker-{i}" for i in range(3)
    }


def exchange(server: ThreadPoolTCPServer) -> bytes:
    with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
        return recv_all(client)


def test_full_queue_refuses_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    recorder = TraceRecorder()
    with caplog.at_level(logging.WARNING, logger="minisocket"):
        with serving(make(max_workers=1, queue_size=1, tracer=recorder)) as server:
            busy = socket.create_connection(server.server_address, timeout=TIMEOUT)
            assert server.entered.acquire(timeout=TIMEOUT)  # the only worker is taken
            queued = socket.create_connection(server.server_address, timeout=TIMEOUT)
            refused = [
                socket.create_connection(server.server_address, timeout=TIMEOUT) for _ in range(3)
            ]
            for client in refused:
                assert recv_all(client) == b""  # EOF at once, not a wait
                client.close()
            server.gate.set()
            assert recv_all(busy) == b"pool-worker-0"
            assert recv_all(queued) == b"pool-worker-0"  # the queued one was served
            busy.close()
            queued.close()
    assert server.refused == 3
    assert recorder.steps().count("refused") == 3
    (record,) = caplog.records  # rate-limited: one line for the burst
    assert "refused 1 connection(s)" in record.getMessage()


def test_persistent_connections_starve_a_small_pool() -> None:
    with serving(make(max_workers=2, queue_size=8)) as server:
        clients = [
            socket.create_connection(server.server_address, timeout=TIMEOUT) for _ in range(4)
        ]
        for _ in range(2):
            assert server.entered.acquire(timeout=TIMEOUT)
        # Two workers are held by two idle clients; the other two wait in the queue.
        assert not server.entered.acquire(timeout=0.3)
        server.gate.set()
        for client in clients:
            assert recv_all(client).startswith(b"pool-worker-")
            client.close()


def test_server_close_stops_the_workers() -> None:
    server = make(max_workers=4)
    server.gate.set()
    with serving(server):
        assert exchange(server).startswith(b"pool-worker-")
        pool = server._pool
        assert pool is not None and len(pool.workers) == 4
    assert not any(w.is_alive() for w in pool.workers)
    assert server._pool is None


def test_trace_through_the_pool() -> None:
    recorder = TraceRecorder()
    server = make(tracer=recorder)
    server.gate.set()
    with serving(server):
        exchange(server)
    per_request = [e for e in recorder.events if e.client_address is not None]
    assert [e.step for e in per_request] == REQUEST_STEPS
    # While serve_forever runs, an idle worker accepts and serves the connection itself.
    (worker,) = {e.thread for e in per_request}
    assert worker.startswith("pool-worker-")


def test_the_serving_thread_accepts_only_when_every_worker_is_busy() -> None:
    recorder = TraceRecorder()

    def accepted_by() -> list[str]:
        return [e.thread for e in recorder.events if e.step == "get_request"]

    with serving(make(max_workers=2, tracer=recorder)) as server:
        clients = [
            socket.create_connection(server.server_address, timeout=TIMEOUT) for _ in range(2)
        ]
        for _ in range(2):
            assert server.entered.acquire(timeout=TIMEOUT)
        clients.append(socket.create_connection(server.server_address, timeout=TIMEOUT))
        deadline = time.monotonic() + TIMEOUT
        while len(accepted_by()) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.gate.set()
        for client in clients:
            assert recv_all(client).startswith(b"pool-worker-")  # served by a worker
            client.close()
        # Once a worker is free, the serving thread stops watching the socket...
        pool = server._pool
        assert pool is not None
        deadline = time.monotonic() + TIMEOUT
        while pool.loop_accepts and time.monotonic() < deadline:
            time.sleep(0.01)
        # ...and the next client is accepted by a worker again.
        assert exchange(server).startswith(b"pool-worker-")
    workers = [name.startswith("pool-worker-") for name in accepted_by()]
    assert workers == [True, True, False, True]


@pytest.mark.parametrize("timeout", [None, 7.5])
def test_the_listening_socket_gets_its_timeout_back(timeout: float | None) -> None:
    server = make()
    server.gate.set()
    server.socket.settimeout(timeout)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        assert exchange(server).startswith(b"pool-worker-")
        assert server.socket.gettimeout() == 0.0  # the workers must never block in accept
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
        assert server.socket.gettimeout() == timeout
        server.server_close()


def test_serving_again_after_shutdown() -> None:
    server = make(max_workers=2)
    server.gate.set()
    try:
        for _ in range(3):
            thread = threading.Thread(target=server.serve_forever)
            thread.start()
            assert exchange(server).startswith(b"pool-worker-")
            server.shutdown()
            thread.join(TIMEOUT)
            assert not thread.is_alive()
    finally:
        server.server_close()


def test_handle_request_hands_the_connection_to_a_worker() -> None:
    server = make(max_workers=2, timeout=TIMEOUT)
    server.gate.set()
    try:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            server.handle_request()  # accepts on this thread, served by a worker
            assert recv_all(client).startswith(b"pool-worker-")
    finally:
        server.server_close()


def test_a_pooled_udp_server() -> None:
    class Upper(BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            sock.sendto(
                data.upper() + threading.current_thread().name.encode(), self.client_address
            )

    class ThreadPoolUDPServer(ThreadPoolMixIn, UDPServer):
        max_workers = 2

    with serving(ThreadPoolUDPServer((HOST, 0), Upper)) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(TIMEOUT)
            for _ in range(3):
                client.sendto(b"hi ", server.server_address)
                assert client.recv(100).startswith(b"HI pool-worker-")


def test_a_failing_verify_request_costs_no_worker(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    class Picky(ThreadPoolTCPServer):
        max_workers = 1

        def verify_request(self, request: Any, client_address: Any) -> bool:
            nonlocal calls
            calls += 1
            if calls == 1:
                request.close()
                raise RuntimeError("verify_request is broken")
            return True

    class Name(BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(threading.current_thread().name.encode())

    with caplog.at_level(logging.ERROR, logger="minisocket"):
        with serving(Picky((HOST, 0), Name)) as server:
            with socket.create_connection(server.server_address, timeout=TIMEOUT) as first:
                assert recv_all(first) == b""
            # The only worker survived and serves the next client.
            with socket.create_connection(server.server_address, timeout=TIMEOUT) as second:
                assert recv_all(second) == b"pool-worker-0"
    assert "verify_request is broken" in caplog.text
