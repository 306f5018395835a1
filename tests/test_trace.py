"""minisocket.trace: events are cheap to skip, complete when recorded."""

from __future__ import annotations

import socket
import threading

from conftest import HOST, REQUEST_STEPS, TIMEOUT, recv_all, serving

from minisocket import BaseRequestHandler, ThreadingTCPServer, TraceEvent, TraceRecorder
from minisocket.trace import emit


def test_recorder_keeps_events_in_order() -> None:
    recorder = TraceRecorder()
    emit(recorder, "a", ("127.0.0.1", 1), "first")
    emit(recorder, "b")
    assert recorder.steps() == ["a", "b"]
    first = recorder.events[0]
    assert isinstance(first, TraceEvent)
    assert (first.client_address, first.detail) == (("127.0.0.1", 1), "first")
    assert first.thread == threading.current_thread().name
    assert len(recorder) == 2 and [e.step for e in recorder] == ["a", "b"]
    recorder.clear()
    assert len(recorder) == 0


def test_tracing_is_off_by_default() -> None:
    assert ThreadingTCPServer.tracer is None


class Hello(BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"hi")


def test_threading_server_trace_crosses_threads() -> None:
    recorder = TraceRecorder()
    server = ThreadingTCPServer((HOST, 0), Hello)
    server.tracer = recorder
    with serving(server):
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            assert recv_all(client) == b"hi"
        for t in list(server._threads):
            t.join(TIMEOUT)
    per_request = [e for e in recorder.events if e.client_address is not None]
    assert [e.step for e in per_request] == REQUEST_STEPS
    loop_thread = per_request[0].thread
    assert {e.thread for e in per_request[:3]} == {loop_thread}
    assert {e.thread for e in per_request[3:]} != {loop_thread}  # handled elsewhere
    steps = recorder.steps()
    assert steps[0] == "serve_forever"
    assert steps.index("close_request") > steps.index("finish")
    assert "shutdown" in steps and steps[-1] == "serve_forever_exit"
