"""Layer 03: the request pipeline's hooks, in order, and its error paths."""

from __future__ import annotations

import errno
import logging
import socket
import time
from typing import Any

import pytest
from conftest import HOST, REQUEST_STEPS, TIMEOUT, Steps, recv_all, serving

from minisocket import (
    BaseRequestHandler,
    ProtocolRequestHandler,
    SelectorTCPServer,
    TCPServer,
    TraceRecorder,
)
from minisocket.pipeline import BaseServer


class Recording(TCPServer):
    """Records every pipeline hook it passes through."""

    def __init__(self, handler: Any, **attrs: Any) -> None:
        self.calls: list[str] = []
        for name, value in attrs.items():
            setattr(self, name, value)
        super().__init__((HOST, 0), handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.calls.append("verify_request")
        return bool(getattr(self, "allow", True))

    def process_request(self, request: Any, client_address: Any) -> None:
        self.calls.append("process_request")
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.calls.append("finish_request")
        super().finish_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.calls.append("shutdown_request")
        super().shutdown_request(request)

    def close_request(self, request: Any) -> None:
        self.calls.append("close_request")
        super().close_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.calls.append("handle_error")


class Hello(BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"hello")


class Raises(BaseRequestHandler):
    exception: type[BaseException] = ValueError

    def handle(self) -> None:
        raise self.exception("from the handler")


def one_request(server: TCPServer) -> bytes:
    with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
        server.handle_request()
        chunks = []
        while chunk := client.recv(1024):
            chunks.append(chunk)
        return b"".join(chunks)


def test_hooks_run_in_order() -> None:
    with Recording(Hello) as server:
        assert one_request(server) == b"hello"
    assert server.calls == [
        "verify_request",
        "process_request",
        "finish_request",
        "shutdown_request",
        "close_request",
    ]


def test_rejected_request_is_shut_down_unanswered() -> None:
    with Recording(Hello, allow=False) as server:
        assert one_request(server) == b""
    assert server.calls == ["verify_request", "shutdown_request", "close_request"]


def test_exception_goes_to_handle_error_then_shutdown_request() -> None:
    with Recording(Raises) as server:
        assert one_request(server) == b""
    assert server.calls == [
        "verify_request",
        "process_request",
        "finish_request",
        "handle_error",
        "shutdown_request",
        "close_request",
    ]


def test_base_exception_shuts_down_and_propagates() -> None:
    class Exits(Raises):
        exception = SystemExit

    with Recording(Exits) as server:
        client = socket.create_connection(server.server_address, timeout=TIMEOUT)
        with pytest.raises(SystemExit):
            server.handle_request()
        assert client.recv(1) == b""
        client.close()
    assert server.calls[-3:] == ["finish_request", "shutdown_request", "close_request"]
    assert "handle_error" not in server.calls


def test_default_handle_error_logs_with_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="minisocket"),
        TCPServer((HOST, 0), Raises) as server,
    ):
        one_request(server)
    (record,) = caplog.records
    assert record.name == "minisocket"
    assert "Exception occurred during processing of request from" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ValueError


def test_trace_of_one_request_on_a_synchronous_server() -> None:
    with TCPServer((HOST, 0), Hello) as server:
        server.tracer = recorder = TraceRecorder()
        one_request(server)
    assert recorder.steps() == [*REQUEST_STEPS, "shutdown_request", "close_request"]
    address = recorder.events[0].client_address
    assert all(e.client_address == address for e in recorder.events[:7])
    assert recorder.events[1].detail == "accepted"
    times = [e.time for e in recorder.events]
    assert times == sorted(times)


class Exhausted(TCPServer):
    """get_request fails with EMFILE while ``failing`` is set (as accept() would when
    the process is out of descriptors), without taking the waiting connection."""

    failing = True

    def get_request(self) -> tuple[Any, Any]:
        if self.failing:
            raise OSError(errno.EMFILE, "Too many open files")
        return super().get_request()


def test_descriptor_exhaustion_pauses_accepting_logs_once_then_resumes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="minisocket"),
        Exhausted((HOST, 0), Hello) as server,
    ):
        server.tracer = steps = Steps()
        with (
            serving(server),
            socket.create_connection(server.server_address, timeout=TIMEOUT) as client,
        ):
            steps.wait("pause_accepting", 3)  # every failure pauses accepting, then retries
            server.failing = False  # descriptors are back
            assert recv_all(client) == b"hello"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "pausing accepts" in messages[0] and "again" in messages[1]
    # A pause is a pause, not a busy loop: each one ended only when its back-off did.
    assert steps.count("resume_accepting") >= 3


class ExhaustedSelector(SelectorTCPServer):
    failing = True

    def get_request(self) -> tuple[Any, Any]:
        if self.failing and self.connections:  # one connection in, then out of descriptors
            raise OSError(errno.EMFILE, "Too many open files")
        return super().get_request()


class Echo(ProtocolRequestHandler):
    def data_received(self, data: bytes) -> None:
        self.send(data)


def test_open_connections_are_served_while_accepting_is_paused() -> None:
    """socketserver busy-loops on a failing accept(); pausing by sleeping would stall
    every open connection for the back-off.  Only accepting pauses."""
    with ExhaustedSelector((HOST, 0), Echo) as server:
        server.tracer = steps = Steps()
        with (
            serving(server),
            socket.create_connection(server.server_address, timeout=TIMEOUT) as client,
        ):
            client.sendall(b"x")
            assert client.recv(1) == b"x"  # accepted and served
            waiting = socket.create_connection(server.server_address, timeout=TIMEOUT)
            steps.wait("pause_accepting")
            served_while_paused = 0
            deadline = time.monotonic() + TIMEOUT
            while served_while_paused < 3 and time.monotonic() < deadline:
                client.sendall(b"y")
                assert client.recv(1) == b"y"
                last_switch = [e.step for e in steps.events if e.step.endswith("_accepting")][-1]
                served_while_paused += last_switch == "pause_accepting"
            assert served_while_paused == 3
            server.failing = False
            waiting.close()


def test_other_accept_errors_are_ignored_without_pausing() -> None:
    class Aborted(TCPServer):
        def get_request(self) -> tuple[Any, Any]:
            raise ConnectionAbortedError(errno.ECONNABORTED, "aborted")

    with Aborted((HOST, 0), Hello) as server, socket.create_connection(server.server_address):
        server.tracer = steps = Steps()
        server.handle_request()  # the listening socket was readable; accept() failed
        assert steps.steps() == []


def test_base_server_needs_a_socket_layer() -> None:
    server = BaseServer(("nowhere", 0), Hello)
    with pytest.raises(NotImplementedError):
        server.fileno()
