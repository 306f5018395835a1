"""Layer 04: handlers -- setup/handle/finish, stream files, datagrams, the blog's bug."""

from __future__ import annotations

import io
import socket
import threading
import time
from typing import Any

import pytest
from conftest import HOST, TIMEOUT, Steps, recv_all, serving

from minisocket import (
    BaseRequestHandler,
    DatagramRequestHandler,
    StreamRequestHandler,
    TCPServer,
    ThreadingTCPServer,
    UDPServer,
)


def test_setup_handle_finish_order_and_finish_after_an_error() -> None:
    calls: list[str] = []

    class Handler(BaseRequestHandler):
        def setup(self) -> None:
            calls.append("setup")

        def handle(self) -> None:
            calls.append("handle")
            raise ValueError("boom")

        def finish(self) -> None:
            calls.append("finish")

    with pytest.raises(ValueError):
        Handler("request", ("peer", 1), "server")
    assert calls == ["setup", "handle", "finish"]


class LineUpper(StreamRequestHandler):
    """A small line protocol: each line comes back upper-cased; QUIT ends the session."""

    def handle(self) -> None:
        self.server.seen = (type(self.wfile), self.connection.gettimeout())
        while line := self.rfile.readline():
            if line.strip() == b"QUIT":
                self.wfile.write(b"BYE\n")
                return
            self.wfile.write(line.upper())


def test_stream_handler_line_protocol() -> None:
    with serving(TCPServer((HOST, 0), LineUpper)) as server:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            client.sendall(b"one\ntwo\nQUIT\nignored\n")
            assert recv_all(client) == b"ONE\nTWO\nBYE\n"
    wfile_type, timeout = server.seen
    assert issubclass(wfile_type, io.BufferedIOBase)
    assert timeout is None


def test_wfile_write_sends_everything_and_reports_it() -> None:
    size = 8 * 1024 * 1024  # far more than one send() moves

    class Big(StreamRequestHandler):
        def handle(self) -> None:
            self.server.written = self.wfile.write(memoryview(b"z" * size))

    with serving(TCPServer((HOST, 0), Big)) as server:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            assert len(recv_all(client)) == size
    assert server.written == size


def test_buffered_wfile_is_flushed_by_finish() -> None:
    class Buffered(StreamRequestHandler):
        wbufsize = 65536

        def handle(self) -> None:
            self.wfile.write(b"held in the buffer until finish()")

    with serving(TCPServer((HOST, 0), Buffered)) as server:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            assert recv_all(client) == b"held in the buffer until finish()"


def test_timeout_and_nagle_options_reach_the_connection() -> None:
    class Tuned(StreamRequestHandler):
        timeout = 2.5
        disable_nagle_algorithm = True

        def handle(self) -> None:
            sock = self.connection
            nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            self.wfile.write(f"{sock.gettimeout()} {bool(nodelay)}".encode())

    with serving(TCPServer((HOST, 0), Tuned)) as server:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            assert recv_all(client) == b"2.5 True"


def test_handler_timeout_ends_an_idle_connection() -> None:
    class Patient(StreamRequestHandler):
        timeout = 0.05

        def handle(self) -> None:
            try:
                self.rfile.readline()
            except TimeoutError:
                self.server.timed_out = True

    with serving(TCPServer((HOST, 0), Patient)) as server:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            assert recv_all(client) == b""  # the server gave up on us and closed
    assert server.timed_out


class Echo(DatagramRequestHandler):
    def handle(self) -> None:
        data = self.rfile.read()
        if data != b"silent":
            self.wfile.write(data[::-1])


def udp_exchange(server: UDPServer, payload: bytes, timeout: float = TIMEOUT) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(timeout)
        client.sendto(payload, server.server_address)
        try:
            return client.recv(65536)
        except TimeoutError:
            return None


def test_datagram_handler_replies_in_one_datagram() -> None:
    with serving(UDPServer((HOST, 0), Echo)) as server:
        assert udp_exchange(server, b"abc") == b"cba"


def test_datagram_handler_sends_nothing_when_nothing_was_written() -> None:
    with serving(UDPServer((HOST, 0), Echo)) as server:
        assert udp_exchange(server, b"silent", timeout=0.3) is None
        assert udp_exchange(server, b"next") == b"txen"  # still serving


def test_datagram_empty_reply_is_an_option() -> None:
    class Compatible(Echo):
        send_empty_reply = True

    with serving(UDPServer((HOST, 0), Compatible)) as server:
        assert udp_exchange(server, b"silent") == b""


# -- the blog's handler and its hidden bug ------------------------------------------


class CountingSocket:
    """Wraps a connection to count how often recv() returned b''."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.empty_reads = 0

    def recv(self, size: int) -> bytes:
        data = self.sock.recv(size)
        if not data:
            self.empty_reads += 1
        return data

    def send(self, data: bytes) -> int:
        return self.sock.send(data)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)


class BlogServer(BaseRequestHandler):
    """The blog's handler: it stops only on ConnectionResetError."""

    def setup(self) -> None:
        self.request = self.server.counter = CountingSocket(self.request)
        self.server.connection = self.request.sock

    def handle(self) -> None:
        while True:
            try:
                data = self.request.recv(1024)
                self.request.send(data.upper())
            except ConnectionResetError:
                break


class FixedServer(BlogServer):
    """The fix: b'' from recv() means the client closed; stop."""

    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.request.sendall(data.upper())


class Quiet(ThreadingTCPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.error = True

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.finished.set()


def run_one_client(handler: type[BaseRequestHandler]) -> Quiet:
    server = Quiet((HOST, 0), handler)
    server.finished = threading.Event()
    with serving(server):
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            client.sendall(b"hello")
            assert client.recv(1024) == b"HELLO"
        # The client closed normally (FIN, not RST).
        if handler is BlogServer:
            deadline = time.monotonic() + TIMEOUT
            while server.counter.empty_reads < 1000 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not server.finished.is_set()
            # Stop the spinning thread: closing the socket makes its recv() fail.
            server.connection.close()
        assert server.finished.wait(TIMEOUT)
    return server


def test_blog_handler_spins_after_an_orderly_close() -> None:
    server = run_one_client(BlogServer)
    assert server.counter.empty_reads >= 1000  # a thousand useless wake-ups and counting


def test_fixed_handler_stops_at_eof() -> None:
    server = run_one_client(FixedServer)
    assert server.counter.empty_reads == 1
    assert not getattr(server, "error", False)


class BigReply(StreamRequestHandler):
    size = 4 * 1024 * 1024

    def handle(self) -> None:
        self.wfile.write(b"x" * self.size)


def slow_reader(address: Any, chunk: int = 32 * 1024, pause: float = 0.01) -> socket.socket:
    """A client with a small receive buffer, so the server's writes wait for it."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, chunk)
    client.settimeout(TIMEOUT)
    client.connect(address)
    return client


def test_idle_timeout_does_not_cut_a_client_that_is_reading() -> None:
    """The whole reply takes longer than idle_timeout to read, but bytes keep moving:
    that is progress, not idleness (``sendall`` with a timeout would give up)."""
    server = ThreadingTCPServer((HOST, 0), BigReply)
    server.idle_timeout = 0.3
    with serving(server), slow_reader(server.server_address) as client:
        received, began = 0, time.monotonic()
        while chunk := client.recv(32 * 1024):
            received += len(chunk)
            time.sleep(0.005)  # the pace of a slow reader, not a synchronisation
        assert received == BigReply.size
        assert time.monotonic() - began > server.idle_timeout


def test_a_reply_cut_by_the_idle_timeout_ends_in_a_reset() -> None:
    server = ThreadingTCPServer((HOST, 0), BigReply)
    server.idle_timeout = 0.2
    server.tracer = steps = Steps()
    with serving(server), slow_reader(server.server_address) as client:
        assert client.recv(1024)  # the reply started ...
        steps.wait("idle_timeout")  # ... and the client stopped reading
        steps.wait("close_request")
        with pytest.raises(ConnectionResetError):  # not a clean end after half a reply
            while client.recv(1024 * 1024):
                pass
