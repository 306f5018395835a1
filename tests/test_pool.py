"""ThreadPoolMixIn: bounded workers, bounded queue, clean refusal."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import pytest
from conftest import HOST, REQUEST_STEPS, TIMEOUT, recv_all, serving

from minisocket import BaseRequestHandler, ThreadPoolTCPServer, TraceRecorder


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
        workers = server._workers
        assert len(workers) == 4
    assert not any(w.is_alive() for w in workers)
    assert server._jobs is None


def test_trace_through_the_pool() -> None:
    recorder = TraceRecorder()
    server = make(tracer=recorder)
    server.gate.set()
    with serving(server):
        exchange(server)
    per_request = [e.step for e in recorder.events if e.client_address is not None]
    assert per_request == REQUEST_STEPS
