"""minisocket.trace: events are cheap to skip, complete when recorded."""

from __future__ import annotations

import logging
import socket
import threading
from types import SimpleNamespace

import pytest
from conftest import HOST, REQUEST_STEPS, TIMEOUT, Steps, recv_all, serving

from minisocket import BaseRequestHandler, ThreadingTCPServer, TraceEvent, TraceRecorder
from minisocket.trace import RepeatedWarning, emit


def test_recorder_keeps_events_in_order() -> None:
    source = SimpleNamespace(tracer=TraceRecorder())
    emit(source, "a", ("127.0.0.1", 1), "first")
    emit(source, "b")
    assert source.tracer.steps() == ["a", "b"]
    first = source.tracer.events[0]
    assert isinstance(first, TraceEvent)
    assert (first.client_address, first.detail) == (("127.0.0.1", 1), "first")
    assert first.thread == threading.current_thread().name


def test_tracing_is_off_by_default_and_anything_without_a_tracer_is_skipped() -> None:
    assert ThreadingTCPServer.tracer is None
    emit(object(), "nothing to trace")  # a socketserver server has no tracer attribute


class Hello(BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"hi")


def test_threading_server_trace_crosses_threads() -> None:
    steps = Steps()
    server = ThreadingTCPServer((HOST, 0), Hello)
    server.tracer = steps
    with serving(server):
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            assert recv_all(client) == b"hi"
        steps.wait("close_request")
    per_request = [e for e in steps.events if e.client_address is not None]
    assert [e.step for e in per_request] == REQUEST_STEPS
    loop_thread = per_request[0].thread
    assert {e.thread for e in per_request[:3]} == {loop_thread}
    assert {e.thread for e in per_request[3:]} != {loop_thread}  # handled elsewhere
    order = steps.steps()
    assert order[0] == "serve_forever"
    assert order.index("close_request") > order.index("finish")
    assert "shutdown" in order and order[-1] == "serve_forever_exit"


def test_a_repeated_warning_is_logged_once_a_second_and_counted_in_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    warning = RepeatedWarning("floods", "flood from %s", interval=3600)
    with caplog.at_level(logging.WARNING, logger="minisocket"):
        for client in range(50_000):
            warning(client)
        warning.flush()
        warning.flush()  # nothing more held back: nothing logged
    assert [r.getMessage() for r in caplog.records] == [
        "flood from 0",
        "floods: 49999 more since the last report",
    ]
