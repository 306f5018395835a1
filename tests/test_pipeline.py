"""Layer 03: the request pipeline's hooks, in order, and its error paths."""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

import pytest
from conftest import HOST, REQUEST_STEPS, TIMEOUT

from minisocket import BaseRequestHandler, TCPServer, TraceRecorder
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
    """get_request fails with EMFILE a few times, then works again."""

    failures = 3

    def get_request(self) -> tuple[Any, Any]:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super().get_request()


def test_descriptor_exhaustion_backs_off_and_logs_once_then_resumes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pauses: list[float] = []
    with (
        caplog.at_level(logging.WARNING, logger="minisocket"),
        Exhausted((HOST, 0), Hello) as server,
    ):
        server.pause = pauses.append  # type: ignore[method-assign]
        client = socket.create_connection(server.server_address, timeout=TIMEOUT)
        for _ in range(3):
            server._handle_request_noblock()
        assert pauses == [0.005, 0.01, 0.02]  # doubling, not a busy loop
        server._handle_request_noblock()  # descriptors are back: served
        assert client.recv(5) == b"hello"
        client.close()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "pausing accepts" in messages[0] and "again" in messages[1]


def test_backoff_is_capped() -> None:
    with Exhausted((HOST, 0), Hello) as server:
        server.failures = 20
        pauses: list[float] = []
        server.pause = pauses.append  # type: ignore[method-assign]
        for _ in range(20):
            server._handle_request_noblock()
        assert max(pauses) == 0.1


def test_other_accept_errors_are_ignored_without_pausing() -> None:
    class Aborted(TCPServer):
        def get_request(self) -> tuple[Any, Any]:
            raise ConnectionAbortedError(errno.ECONNABORTED, "aborted")

    with Aborted((HOST, 0), Hello) as server:
        server.pause = pytest.fail  # type: ignore[assignment]
        server._handle_request_noblock()


def test_base_server_needs_a_socket_layer() -> None:
    server = BaseServer(("nowhere", 0), Hello)
    with pytest.raises(NotImplementedError):
        server.get_request()
    with pytest.raises(NotImplementedError):
        server.fileno()
