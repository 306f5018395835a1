"""Layer 02: serve_forever, shutdown, handle_request, and the server's selector."""

from __future__ import annotations

import resource
import selectors
import socket
import threading
import time
from typing import Any

import pytest
from conftest import HOST, TIMEOUT, Steps, converse, open_fds, serving

from minisocket import BaseRequestHandler, TCPServer


class Hello(BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"hello")


def traced(handler: type[Any] = Hello, **attrs: Any) -> TCPServer:
    server = TCPServer((HOST, 0), handler)
    server.tracer = Steps()
    for name, value in attrs.items():
        setattr(server, name, value)
    return server


def start(server: TCPServer, poll_interval: float = 0.5) -> threading.Thread:
    """serve_forever on a thread; returns once the loop runs."""
    thread = threading.Thread(target=server.serve_forever, args=(poll_interval,), daemon=True)
    thread.start()
    server.tracer.wait("serve_forever")  # type: ignore[union-attr]
    return thread


def test_serves_until_shutdown_then_returns() -> None:
    with traced() as server:
        thread = start(server)
        assert [converse(server.server_address) for _ in range(3)] == [b"hello"] * 3
        server.shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert server.tracer.count("serve_forever_exit") == 1  # type: ignore[union-attr]


def test_shutdown_does_not_wait_for_the_poll_interval() -> None:
    with traced() as server:
        thread = start(server, poll_interval=3600)
        began = time.monotonic()
        server.shutdown()
        assert time.monotonic() - began < TIMEOUT / 2  # socketserver: up to an hour
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_shutdown_without_serve_forever_returns_and_stays_pending() -> None:
    with traced() as server:
        server.shutdown()  # socketserver: blocks forever
        server.serve_forever()  # the pending shutdown ends this run before it starts
        assert server.tracer.steps() == ["shutdown"]  # type: ignore[union-attr]
        thread = start(server)  # the request was used up: this run serves
        assert converse(server.server_address) == b"hello"
        server.shutdown()
        thread.join(TIMEOUT)


@pytest.mark.parametrize("order", ["before", "during", "closed-first"])
def test_start_then_stop_in_every_order(order: str) -> None:
    """``Thread(target=serve_forever).start(); shutdown(); server_close()``: whichever
    of the three comes first, serve_forever returns without an exception."""
    server = traced()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.serve_forever()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=serve)
    if order == "during":
        thread.start()
        server.tracer.wait("serve_forever")  # type: ignore[union-attr]
    server.shutdown()
    if order == "closed-first":
        server.server_close()
    if order != "during":
        thread.start()
    thread.join(TIMEOUT)
    server.server_close()
    assert not thread.is_alive() and errors == []
    assert server.socket.fileno() == -1


def test_shutdown_from_the_serving_thread_does_not_deadlock() -> None:
    class Stopper(BaseRequestHandler):
        def handle(self) -> None:
            self.server.shutdown()  # socketserver: deadlocks here
            self.request.sendall(b"stopping")

    with traced(Stopper) as server:
        thread = start(server)
        assert converse(server.server_address) == b"stopping"
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_serve_forever_twice_at_once_is_an_error() -> None:
    with serving(traced()) as server:
        server.tracer.wait("serve_forever")
        with pytest.raises(RuntimeError, match="already running"):
            server.serve_forever()


def test_serve_forever_after_server_close_returns_at_once() -> None:
    server = traced()
    server.server_close()
    server.serve_forever()  # server_close() stops the loop, whether it ran yet or not
    assert server.tracer.steps() == []  # type: ignore[union-attr]


def test_handle_request_with_no_time_to_wait_still_looks_once() -> None:
    with traced(timeout=0) as server:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            server.handle_request()  # socketserver's way to poll without blocking
            assert client.recv(16) == b"hello"


def test_server_close_stops_a_loop_running_on_another_thread() -> None:
    server = traced()
    thread = start(server)
    server.server_close()  # e.g. an exception inside `with server:` in the main thread
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert server.tracer.steps("service_actions")[-1] == "serve_forever_exit"  # type: ignore[union-attr]


def test_handle_request_serves_one() -> None:
    with traced() as server:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            server.handle_request()
            assert client.recv(16) == b"hello"


class Patient(TCPServer):
    timeouts = 0

    def handle_timeout(self) -> None:
        self.timeouts += 1


@pytest.mark.parametrize(("own", "socket_timeout"), [(0.05, None), (None, 0.05), (60, 0.05)])
def test_handle_request_waits_the_smaller_timeout(
    own: float | None, socket_timeout: float | None
) -> None:
    with Patient((HOST, 0), Hello) as server:
        server.timeout = own
        server.socket.settimeout(socket_timeout)
        server.handle_request()  # nobody connects
        assert server.timeouts == 1


def test_register_calls_back_on_readiness_until_unregistered() -> None:
    with traced() as server:
        reader, writer = socket.socketpair()
        with reader, writer:
            seen: list[bytes] = []
            server.register(
                reader, selectors.EVENT_READ, lambda events: seen.append(reader.recv(9))
            )
            writer.send(b"ping")
            server.poll(TIMEOUT)
            assert seen == [b"ping"]
            server.unregister(reader)
            writer.send(b"pong")
            server.poll(0.01)
            assert seen == [b"ping"]


def test_pauses_nest_and_the_last_resume_accepts_again() -> None:
    with (
        Patient((HOST, 0), Hello) as server,
        socket.create_connection(server.server_address, timeout=TIMEOUT) as client,
    ):
        server.timeout = 0.05
        server.pause_accepting()
        server.pause_accepting()
        server.resume_accepting()
        server.handle_request()  # still paused: the waiting client is not accepted
        assert server.timeouts == 1
        server.resume_accepting()
        server.handle_request()
        assert client.recv(16) == b"hello"
        with pytest.raises(RuntimeError):
            server.resume_accepting()


def test_call_later_runs_due_callbacks_in_order() -> None:
    with traced() as server:
        ran: list[str] = []
        server.call_later(0.02, lambda: ran.append("second"))
        server.call_later(0.01, lambda: ran.append("first"))
        server.call_later(3600, lambda: ran.append("never"))
        deadline = time.monotonic() + TIMEOUT
        while len(ran) < 2 and time.monotonic() < deadline:
            server.poll(TIMEOUT)  # returns when the next timer is due, not after TIMEOUT
        assert ran == ["first", "second"]


def test_the_loop_works_with_descriptors_above_1024() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [socket.socket() for _ in range(1100 - open_fds())]
    try:
        with serving(traced()) as server:  # the waker's descriptors are past 1024
            assert converse(server.server_address) == b"hello"
    finally:
        for sock in filler:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
