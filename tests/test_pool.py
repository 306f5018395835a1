"""ThreadPoolMixIn: bounded workers, bounded queue, clean refusal, survival."""

from __future__ import annotations

import logging
import re
import socket
import sys
import threading
import time
from typing import Any

import pytest
from conftest import HOST, REQUEST_STEPS, TIMEOUT, Steps, recv_all, serving

from minisocket import BaseRequestHandler, ThreadPoolMixIn, ThreadPoolTCPServer, UDPServer


class Gate(BaseRequestHandler):
    """Replies with the worker's name once the server's gate opens."""

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


def make(handler: type[Any] = Gate, **attrs: Any) -> ThreadPoolTCPServer:
    server = ThreadPoolTCPServer((HOST, 0), handler)
    server.gate, server.entered = threading.Event(), threading.Semaphore(0)
    server.lock, server.active, server.most_active = threading.Lock(), 0, 0
    server.tracer = Steps()
    for name, value in attrs.items():
        setattr(server, name, value)
    return server


def exchange(server: Any) -> bytes:
    with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
        return recv_all(client)


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
        server.tracer.wait("process_request", 9)  # all nine accepted, six of them queued
        assert server.active == 3
        server.gate.set()
        for c in clients:
            c.join(TIMEOUT)
    assert server.most_active == 3
    assert len(results) == 9 and {r.decode() for r in results} <= {
        f"pool-worker-{i}" for i in range(3)
    }


def test_full_queue_refuses_cleanly_and_every_refusal_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="minisocket"):
        with serving(make(max_workers=1, queue_size=1)) as server:
            busy = socket.create_connection(server.server_address, timeout=TIMEOUT)
            assert server.entered.acquire(timeout=TIMEOUT)  # the only worker is taken
            queued = socket.create_connection(server.server_address, timeout=TIMEOUT)
            server.tracer.wait("process_request", 2)
            for _ in range(52):
                with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
                    assert recv_all(client) == b""  # EOF at once, not a wait
            server.gate.set()
            assert recv_all(busy) == b"pool-worker-0"
            assert recv_all(queued) == b"pool-worker-0"  # the queued one was served
            busy.close()
            queued.close()
    assert server.refused == 52 and server.tracer.count("refused") == 52
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) < 10  # rate-limited ...
    held = [re.search(r"(\d+) more since", m) for m in messages]
    logged = sum(int(match[1]) if match else 1 for match in held)
    assert logged == 52, messages  # ... and every refusal accounted for


def test_persistent_connections_starve_a_small_pool() -> None:
    with serving(make(max_workers=2, queue_size=8)) as server:
        clients = [
            socket.create_connection(server.server_address, timeout=TIMEOUT) for _ in range(4)
        ]
        for _ in range(2):
            assert server.entered.acquire(timeout=TIMEOUT)
        server.tracer.wait("process_request", 4)
        # Two workers are held by two idle clients; the other two wait in the queue.
        assert server.active == 2 and server.tracer.count("setup") == 2
        server.gate.set()
        for client in clients:
            assert recv_all(client).startswith(b"pool-worker-")
            client.close()


def worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("pool-worker-")}


def test_server_close_stops_the_workers_and_closes_what_is_queued() -> None:
    before = worker_threads()
    server = make(max_workers=1)
    with serving(server):
        busy = socket.create_connection(server.server_address, timeout=TIMEOUT)
        assert server.entered.acquire(timeout=TIMEOUT)
        queued = socket.create_connection(server.server_address, timeout=TIMEOUT)
        server.tracer.wait("process_request", 2)
        assert len(worker_threads() - before) == 1
        server.shutdown()
        closer = threading.Thread(target=server.server_close)
        closer.start()
        server.gate.set()
        closer.join(TIMEOUT)
        assert recv_all(busy) == b"pool-worker-0"  # in progress: finished
        assert recv_all(queued) == b""  # queued: closed unanswered
    assert worker_threads() - before == set()


def test_trace_through_the_pool() -> None:
    server = make()
    server.gate.set()
    with serving(server):
        exchange(server)
        server.tracer.wait("close_request")
    per_request = [e for e in server.tracer.events if e.client_address is not None]
    assert [e.step for e in per_request] == REQUEST_STEPS
    # The serving thread accepts; a worker runs the handler.
    loop, *others = [e.thread for e in per_request]
    assert loop == "serve_forever" and others[-1].startswith("pool-worker-")


def test_handle_request_hands_the_connection_to_a_worker() -> None:
    server = make()
    server.gate.set()
    with server, socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
        server.handle_request()
        assert recv_all(client).startswith(b"pool-worker-")


def test_a_pooled_udp_server() -> None:
    class Reply(BaseRequestHandler):
        def handle(self) -> None:
            _data, sock = self.request
            sock.sendto(threading.current_thread().name.encode(), self.client_address)

    class Pooled(ThreadPoolMixIn, UDPServer):
        max_workers = 2

    with serving(Pooled((HOST, 0), Reply)) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(TIMEOUT)
            for _ in range(3):
                client.sendto(b"?", server.server_address)
                assert client.recv(64).startswith(b"pool-worker-")


def test_a_handler_calling_sys_exit_does_not_cost_a_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Exits(BaseRequestHandler):
        def handle(self) -> None:
            if self.request.recv(4) == b"exit":
                sys.exit(1)
            self.request.sendall(b"alive")

    with caplog.at_level(logging.ERROR, logger="minisocket"):
        with serving(make(Exits, max_workers=4)) as server:
            for _ in range(8):  # twice as many as there are workers
                with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
                    client.sendall(b"exit")
                    assert recv_all(client) == b""
            with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
                client.sendall(b"ping")
                assert recv_all(client) == b"alive"
    assert sum("SystemExit" in r.getMessage() for r in caplog.records) == 8


class Trickle(BaseRequestHandler):
    """Reads a request one byte at a time until a newline: a slow client holds it."""

    def handle(self) -> None:
        while (byte := self.request.recv(1)) and byte != b"\n":
            pass
        self.request.sendall(b"served")


def test_trickling_clients_cannot_hold_the_pool_for_ever() -> None:
    """Clients that send a byte now and then (never idle, never done) hold every worker
    and queue slot; request_time_limit frees the workers for everyone else."""
    server = make(Trickle, max_workers=4, queue_size=4, request_time_limit=0.3)
    with serving(server):
        tricklers = [
            socket.create_connection(server.server_address, timeout=TIMEOUT) for _ in range(8)
        ]
        server.tracer.wait("process_request", 8)
        served, deadline = 0, time.monotonic() + TIMEOUT
        while served < 5 and time.monotonic() < deadline:
            for trickler in tricklers:
                try:
                    trickler.send(b".")  # still talking
                except OSError:
                    pass  # its connection was cut
            with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
                client.sendall(b"request\n")
                served += recv_all(client) == b"served"  # b"" while refused
        assert served == 5
        for trickler in tricklers:
            trickler.close()


def test_server_close_does_not_wait_twice_for_a_stuck_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler stuck off the socket is logged after 2 x close_grace and not waited
    for again by the pool (the gate stays shut until server_close has returned)."""
    server = make(max_workers=2, close_grace=0.05)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    client = socket.create_connection(server.server_address, timeout=TIMEOUT)
    assert server.entered.acquire(timeout=TIMEOUT)
    with caplog.at_level(logging.WARNING, logger="minisocket"):
        server.server_close()  # stops the loop, then gives the stuck handler its grace
    thread.join(TIMEOUT)
    assert any("not waiting for handler thread" in r.getMessage() for r in caplog.records)
    server.gate.set()
    client.close()
    server.tracer.wait("close_request")
