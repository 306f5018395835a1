"""SelectorMixIn / ProtocolRequestHandler: one thread, callbacks, back-pressure."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from typing import Any

import pytest
from conftest import HOST, TIMEOUT, recv_all, serving

from minisocket import (
    ProtocolRequestHandler,
    SelectorTCPServer,
    SelectorUnixStreamServer,
    StreamRequestHandler,
    TraceRecorder,
)


class UpperEcho(ProtocolRequestHandler):
    def data_received(self, data: bytes) -> None:
        self.server.threads.add(threading.current_thread().name)
        self.send(data.upper())


def make(handler: type[ProtocolRequestHandler] = UpperEcho, **attrs: Any) -> SelectorTCPServer:
    server = SelectorTCPServer((HOST, 0), handler)
    server.threads = set()
    server.events = []
    for name, value in attrs.items():
        setattr(server, name, value)
    return server


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


@pytest.mark.parametrize("busy_poll", [0.0, 50e-6], ids=["sleeping", "busy-polling"])
def test_many_clients_interleaved_on_one_thread(busy_poll: float) -> None:
    with serving(make(busy_poll=busy_poll)) as server:
        clients = [
            socket.create_connection(server.server_address, timeout=TIMEOUT) for _ in range(20)
        ]
        for round_ in range(3):
            for i, client in enumerate(clients):
                client.sendall(b"client %d round %d;" % (i, round_))
            for i, client in enumerate(clients):
                expected = b"CLIENT %d ROUND %d;" % (i, round_)
                got = b""
                while len(got) < len(expected):
                    got += client.recv(1024)
                assert got == expected
        for client in clients:
            client.close()
        wait_for(lambda: not server.connections, "all connections to close")
    assert len(server.threads) == 1  # every callback ran on the loop's thread


class Recorder(ProtocolRequestHandler):
    """Records its callbacks in server.events."""

    def connection_made(self) -> None:
        self.server.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.server.events.append(("data", data))
        if data == b"boom":
            raise ValueError("handler failure")
        self.send(data.upper())

    def eof_received(self) -> bool | None:
        self.server.events.append("eof")
        if getattr(self.server, "keep_open", False):
            self.send(b"after-eof")
            self.close()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.events.append(("lost", type(exc).__name__ if exc else None))


def test_eof_flushes_then_closes() -> None:
    with serving(make(Recorder)) as server:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            client.sendall(b"abc")
            wait_for(lambda: ("data", b"abc") in server.events, "data")
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b"ABC"
        wait_for(lambda: len(server.events) == 4, "connection_lost")
    assert server.events == ["made", ("data", b"abc"), "eof", ("lost", None)]


def test_eof_received_true_keeps_the_write_side() -> None:
    with serving(make(Recorder, keep_open=True)) as server:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b"after-eof"


def test_reset_reports_the_exception() -> None:
    with serving(make(Recorder)) as server:
        client = socket.create_connection(server.server_address, timeout=TIMEOUT)
        client.sendall(b"x")
        wait_for(lambda: ("data", b"x") in server.events, "data")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        wait_for(lambda: server.events[-1][0] == "lost", "connection_lost")
    assert server.events[-1] == ("lost", "ConnectionResetError")


def test_a_raising_handler_is_logged_and_closed_others_keep_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="minisocket"), serving(make(Recorder)) as server:
        good = socket.create_connection(server.server_address, timeout=TIMEOUT)
        bad = socket.create_connection(server.server_address, timeout=TIMEOUT)
        bad.sendall(b"boom")
        assert recv_all(bad) == b""  # closed by the server
        good.sendall(b"still here")
        assert good.recv(100) == b"STILL HERE"
        good.close()
        bad.close()
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is ValueError


class Flood(ProtocolRequestHandler):
    """Sends a large reply at once; records every chunk it reads."""

    high_water = 64 * 1024
    low_water = 16 * 1024
    size = 32 * 1024 * 1024  # more than the kernel's socket buffers hold on loopback

    def connection_made(self) -> None:
        self.server.handler = self
        self.send(bytes(range(256)) * (self.size // 256))

    def data_received(self, data: bytes) -> None:
        self.server.events.append(data)


def test_back_pressure_pauses_reading_until_the_client_drains() -> None:
    recorder = TraceRecorder()
    server = make(Flood, tracer=recorder)
    with serving(server):
        client = socket.create_connection(server.server_address, timeout=TIMEOUT)
        wait_for(lambda: "pause_reading" in recorder.steps(), "reading to pause")
        handler = server.handler
        assert handler.buffered > Flood.high_water  # the kernel could not take it all
        client.sendall(b"ignored while paused")
        time.sleep(0.1)
        assert server.events == []  # not read: the server is not producing more output
        received = bytearray()
        while len(received) < Flood.size:
            received += client.recv(1 << 20)
        assert received == bytes(range(256)) * (Flood.size // 256)  # all, in order
        wait_for(lambda: server.events, "reading to resume")
        assert b"".join(server.events) == b"ignored while paused"
        assert "resume_reading" in recorder.steps()
        client.close()


def test_trace_of_one_connection() -> None:
    recorder = TraceRecorder()
    with serving(make(tracer=recorder)) as server:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            client.sendall(b"hi")
            assert client.recv(10) == b"HI"
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b""
        wait_for(lambda: "close_request" in recorder.steps(), "close_request")
    steps = [e.step for e in recorder.events if e.step not in ("service_actions",)]
    start = steps.index("get_request")
    assert steps[start : start + 9] == [
        "get_request",
        "verify_request",
        "process_request",
        "connection_made",
        "data_received",
        "eof_received",
        "connection_lost",
        "shutdown_request",
        "close_request",
    ]


def test_shutdown_freezes_connections_and_serve_forever_resumes_them() -> None:
    server = make()
    try:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,))
        thread.start()
        client = socket.create_connection(server.server_address, timeout=TIMEOUT)
        client.sendall(b"one")
        assert client.recv(10) == b"ONE"
        server.shutdown()
        thread.join(TIMEOUT)
        assert len(server.connections) == 1
        client.sendall(b"two")  # nobody serves it now...
        thread = threading.Thread(target=server.serve_forever, args=(0.05,))
        thread.start()
        assert client.recv(10) == b"TWO"  # ...until the loop runs again
        server.shutdown()
        thread.join(TIMEOUT)
    finally:
        server.server_close()
    assert not server.connections
    assert recv_all(client) == b""  # server_close closed it
    client.close()


def test_blocking_handlers_are_refused() -> None:
    with pytest.raises(TypeError, match="ProtocolRequestHandler"):
        SelectorTCPServer((HOST, 0), StreamRequestHandler)


def test_handle_request_is_not_supported() -> None:
    with make() as server, pytest.raises(NotImplementedError):
        server.handle_request()


def test_unix_stream_variant(unix_path: str) -> None:
    server = SelectorUnixStreamServer(unix_path, UpperEcho)
    server.threads = set()
    with serving(server):
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(TIMEOUT)
            client.connect(unix_path)
            client.sendall(b"unix")
            assert client.recv(10) == b"UNIX"
