"""SelectorMixIn / ProtocolRequestHandler: one thread, callbacks, back-pressure, limits."""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from typing import Any

import pytest
from conftest import HOST, TIMEOUT, Steps, recv_all, serving

from minisocket import (
    BusyPollSelector,
    ProtocolRequestHandler,
    SelectorTCPServer,
    SelectorUnixStreamServer,
    StreamRequestHandler,
)


class UpperEcho(ProtocolRequestHandler):
    def data_received(self, data: bytes) -> None:
        self.server.threads.add(threading.current_thread().name)
        self.send(data.upper())


def make(handler: type[ProtocolRequestHandler] = UpperEcho, **attrs: Any) -> SelectorTCPServer:
    server = SelectorTCPServer((HOST, 0), handler)
    server.threads = set()
    server.events = []
    server.tracer = Steps()
    for name, value in attrs.items():
        setattr(server, name, value)
    return server


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError(f"the server closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def connect(server: Any, rcvbuf: int | None = None) -> socket.socket:
    client = socket.socket()
    if rcvbuf:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    client.settimeout(TIMEOUT)
    client.connect(server.server_address)
    return client


@pytest.mark.parametrize("selector", [None, BusyPollSelector], ids=["sleeping", "busy-polling"])
def test_many_clients_interleaved_on_one_thread(selector: Any) -> None:
    server = make()
    if selector:
        server.selector_class = selector
    with serving(server):
        clients = [connect(server) for _ in range(20)]
        for round_ in range(3):
            for i, client in enumerate(clients):
                client.sendall(b"client %d round %d;" % (i, round_))
            for i, client in enumerate(clients):
                expected = b"CLIENT %d ROUND %d;" % (i, round_)
                assert recv_exactly(client, len(expected)) == expected
        for client in clients:
            client.close()
        server.tracer.wait("connection_lost", 20)
        assert not server.connections
    assert server.threads == {"serve_forever"}  # every callback ran on the loop's thread


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
            if self.server.keep_open == "and close":
                self.close()
            return True
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self.server.events.append(("lost", type(exc).__name__ if exc else None))


def test_eof_flushes_then_closes() -> None:
    with serving(make(Recorder)) as server:
        with connect(server) as client:
            client.sendall(b"abc")
            assert recv_exactly(client, 3) == b"ABC"
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b""
        server.tracer.wait("connection_lost")
    assert server.events == ["made", ("data", b"abc"), "eof", ("lost", None)]


def test_eof_received_true_keeps_the_write_side() -> None:
    with serving(make(Recorder, keep_open="and close")) as server, connect(server) as client:
        client.shutdown(socket.SHUT_WR)
        assert recv_all(client) == b"after-eof"


def test_a_kept_open_connection_is_lost_when_the_client_goes_away() -> None:
    """eof_received() returned True, so nothing reads the socket any more; a client that
    then resets is still noticed (socketserver has no such state; asyncio leaks it)."""
    with serving(make(Recorder, keep_open="until the client leaves")) as server:
        for i in range(20):
            with connect(server) as client:
                client.sendall(b"x")
                client.shutdown(socket.SHUT_WR)  # the server replies, keeps the socket
                server.tracer.wait("eof_received", i + 1)
        server.tracer.wait("connection_lost", 20)  # unread replies: each close was a reset
        assert not server.connections


def test_reset_reports_the_exception() -> None:
    with serving(make(Recorder)) as server:
        client = connect(server)
        client.sendall(b"x")
        assert recv_exactly(client, 1) == b"X"
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        server.tracer.wait("connection_lost")
    assert server.events[-1] == ("lost", "ConnectionResetError")


def test_a_raising_handler_is_logged_and_closed_others_keep_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="minisocket"), serving(make(Recorder)) as server:
        with connect(server) as good, connect(server) as bad:
            bad.sendall(b"boom")
            assert recv_all(bad) == b""  # closed by the server
            good.sendall(b"still here")
            assert recv_exactly(good, 10) == b"STILL HERE"
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is ValueError


def test_library_state_is_out_of_the_handlers_namespace() -> None:
    class Protocol(ProtocolRequestHandler):
        """A protocol that names its own state as a library might have."""

        def connection_made(self) -> None:
            self._state, self._out, self._buffer, self.buffered = "headers", [], b"", 0

        def _read(self, data: bytes) -> bytes:
            return data.upper()

        def data_received(self, data: bytes) -> None:
            self._out.append(self._read(data))
            self.send(self._out[-1])

    with serving(make(Protocol)) as server, connect(server) as client:
        client.sendall(b"still works")
        assert recv_exactly(client, 11) == b"STILL WORKS"


class Stream(ProtocolRequestHandler):
    """Streams a large reply in chunks, pausing when asked: memory stays bounded."""

    high_water = 64 * 1024
    low_water = 16 * 1024
    size = 16 * 1024 * 1024
    chunk = 16 * 1024

    def connection_made(self) -> None:
        self.sent, self.paused, self.most_buffered = 0, False, 0
        self.produce()

    def produce(self) -> None:
        while not self.paused and self.sent < self.size:
            self.send(b"s" * self.chunk)
            self.sent += self.chunk
            self.most_buffered = max(self.most_buffered, self.transport.buffered)
        self.server.most_buffered = max(
            getattr(self.server, "most_buffered", 0), self.most_buffered
        )

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.produce()

    def data_received(self, data: bytes) -> None:
        self.server.events.append(data)


def test_back_pressure_pauses_the_producer_and_reading_until_the_client_drains() -> None:
    with serving(make(Stream)) as server, connect(server, rcvbuf=64 * 1024) as client:
        server.tracer.wait("pause_writing")
        client.sendall(b"sent while paused")
        assert recv_exactly(client, Stream.size) == b"s" * Stream.size
        server.tracer.wait("data_received")
        assert b"".join(server.events) == b"sent while paused"
    order = server.tracer.steps()
    first_read = order.index("data_received")
    assert order.index("pause_writing") < order.index("resume_writing") < first_read
    assert server.most_buffered <= Stream.high_water + Stream.chunk


def test_twenty_slow_readers_of_a_streamed_reply_cost_little_memory() -> None:
    with serving(make(Stream)) as server:
        clients = [connect(server, rcvbuf=64 * 1024) for _ in range(20)]
        server.tracer.wait("pause_writing", 20)  # each one paused at high_water
        assert server.most_buffered <= Stream.high_water + Stream.chunk
        for client in clients:
            client.close()


class Flood(ProtocolRequestHandler):
    """Sends its whole reply at once when asked, never looking at ``buffered``.

    (It waits to be asked: a reset sent from connection_made can reach the client before
    its connect() has returned.)
    """

    size = 6 * 1024 * 1024

    def data_received(self, data: bytes) -> None:
        self.send(b"f" * self.size)


def ask_for_a_flood(server: Any, rcvbuf: int = 64 * 1024) -> socket.socket:
    client = connect(server, rcvbuf)
    client.sendall(b"go")
    return client


def reset_or_eof(client: socket.socket) -> str:
    try:
        recv_all(client)
    except ConnectionResetError:
        return "reset"
    return "eof"


def test_the_servers_output_budget_aborts_with_a_reset_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make(Flood, max_buffered_total=8 * 1024 * 1024)
    with caplog.at_level(logging.WARNING, logger="minisocket"), serving(server):
        clients = [ask_for_a_flood(server) for _ in range(12)]
        server.tracer.wait("data_received", 12)
        # data_received is traced before the handler runs: one more pass of the loop,
        # and the last handler's send (and any abort) is done.
        server.tracer.wait("service_actions", server.tracer.count("service_actions") + 1)
        aborted = [r for r in caplog.records if "BufferError" in r.getMessage()]
        assert aborted  # what the kernel does not take of 12 x 6 MiB exceeds 8 MiB ...
        outcomes = [reset_or_eof(client) for client in clients[-len(aborted) :]]
        assert outcomes == ["reset"] * len(aborted)  # ... and the clients know it
        for client in clients:
            client.close()


def test_max_buffered_aborts_with_a_reset_and_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    class Small(Flood):
        max_buffered = 1024 * 1024

    with caplog.at_level(logging.WARNING, logger="minisocket"), serving(make(Small)) as server:
        with ask_for_a_flood(server) as client:
            # Read only after the abort: a client reading while the handler sends could
            # let one send() hand the kernel the whole reply, and nothing would be buffered.
            server.tracer.wait("connection_lost")
            assert reset_or_eof(client) == "reset"
    assert any("BufferError" in r.getMessage() for r in caplog.records)


def test_server_close_lets_replies_in_flight_finish() -> None:
    server = make(Flood)
    with server:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,))
        thread.start()
        clients = [ask_for_a_flood(server) for _ in range(5)]
        server.tracer.wait("data_received", 5)
        server.shutdown()
        thread.join(TIMEOUT)
        replies: dict[int, bytes] = {}
        readers = [
            threading.Thread(target=lambda i=i, c=c: replies.update({i: recv_all(c)}))
            for i, c in enumerate(clients)
        ]
        closer = threading.Thread(target=server.server_close)
        closer.start()
        for reader in readers:
            reader.start()
        closer.join(TIMEOUT)
        for reader in readers:
            reader.join(TIMEOUT)
    assert [replies[i] for i in range(5)] == [b"f" * Flood.size] * 5
    for client in clients:
        client.close()


def test_server_close_resets_what_it_cannot_flush_within_close_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = make(Flood, close_grace=0.05)
    with caplog.at_level(logging.WARNING, logger="minisocket"):
        with serving(server):
            clients = [ask_for_a_flood(server) for _ in range(3)]
            server.tracer.wait("data_received", 3)
        # server_close has run, and nobody was reading
        assert [reset_or_eof(client) for client in clients] == ["reset"] * 3
    assert sum("unsent" in r.getMessage() for r in caplog.records) == 3
    for client in clients:
        client.close()


def test_idle_timeout_does_not_cut_a_client_that_is_reading() -> None:
    class Big(Flood):
        """Most of the reply stays in the server's buffer, where progress is seen.
        (What the kernel holds -- up to its send buffer -- the client reads unseen.)"""

        max_buffered = None
        size = 4 * 1024 * 1024

        def data_received(self, data: bytes) -> None:
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            super().data_received(data)
            self.close()  # once it is all sent

    server = make(Big, idle_timeout=0.3)
    with serving(server, poll_interval=0.01), ask_for_a_flood(server, 32 * 1024) as client:
        received = 0
        while chunk := client.recv(32 * 1024):
            received += len(chunk)
            threading.Event().wait(0.005)  # the pace of a slow reader
        assert received == Big.size
    assert server.tracer.count("idle_timeout") == 0


def test_idle_connections_are_closed() -> None:
    with serving(make(Recorder, idle_timeout=0.05)) as server, connect(server) as client:
        assert recv_all(client) == b""
    assert server.events[-1] == ("lost", "TimeoutError")


def test_trace_of_one_connection() -> None:
    with serving(make()) as server:
        with connect(server) as client:
            client.sendall(b"hi")
            assert recv_exactly(client, 2) == b"HI"
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b""
        server.tracer.wait("close_request")
    steps = server.tracer.steps("service_actions")
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
    with server:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,))
        thread.start()
        client = connect(server)
        client.sendall(b"one")
        assert recv_exactly(client, 3) == b"ONE"
        server.shutdown()
        thread.join(TIMEOUT)
        assert len(server.connections) == 1
        client.sendall(b"two")  # nobody serves it now...
        thread = threading.Thread(target=server.serve_forever, args=(0.05,))
        thread.start()
        assert recv_exactly(client, 3) == b"TWO"  # ...until the loop runs again
        server.shutdown()
        thread.join(TIMEOUT)
    assert not server.connections
    assert recv_all(client) == b""  # server_close closed it
    client.close()


def test_poll_runs_the_server_without_serve_forever() -> None:
    with make() as server, connect(server) as client:
        server.poll(TIMEOUT)  # accepts
        assert len(server.connections) == 1
        client.sendall(b"polled")
        server.poll(TIMEOUT)
        assert recv_exactly(client, 6) == b"POLLED"


def test_blocking_handlers_are_refused() -> None:
    with pytest.raises(TypeError, match="ProtocolRequestHandler"):
        SelectorTCPServer((HOST, 0), StreamRequestHandler)


def test_a_forked_child_closing_the_server_leaves_the_parents_connections() -> None:
    with serving(make()) as server, connect(server) as client:
        client.sendall(b"before")
        assert recv_exactly(client, 6) == b"BEFORE"
        child = os.fork()
        if child == 0:
            server.server_close()
            os._exit(0)
        os.waitpid(child, 0)
        client.sendall(b"after")
        assert recv_exactly(client, 5) == b"AFTER"


def test_unix_stream_variant(unix_path: str) -> None:
    server = SelectorUnixStreamServer(unix_path, UpperEcho)
    server.threads = set()
    with serving(server), socket.socket(socket.AF_UNIX) as client:
        client.settimeout(TIMEOUT)
        client.connect(unix_path)
        client.sendall(b"unix")
        assert recv_exactly(client, 4) == b"UNIX"
