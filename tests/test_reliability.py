"""What breaks socketserver, and does not break minisocket -- and what an adversarial
sweep found breaking minisocket itself.

Most tests run against both libraries.  On socketserver they are expected failures
(``xfail(strict=True)``: should socketserver ever pass, the test says so), which keeps
the contrast visible in every test run.  Every wait is bounded, and what the stdlib
leaves hanging is released by hand at the end of the test.  The rest check minisocket
alone: start-then-stop races, descriptor limits, datagram floods.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from conftest import HOST, TIMEOUT, recv_all

import minisocket


def both(reason: str) -> Any:
    """Parametrize over (socketserver, minisocket); socketserver is expected to fail."""
    return pytest.mark.parametrize(
        "lib",
        [
            pytest.param(
                socketserver, id="socketserver", marks=pytest.mark.xfail(strict=True, reason=reason)
            ),
            pytest.param(minisocket, id="minisocket"),
        ],
    )


def start(server: Any, poll_interval: float = 0.05) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, args=(poll_interval,), daemon=True)
    thread.start()
    return thread


def wait_until(predicate: Any) -> None:
    """Poll what socketserver offers no event for (it has no tracer)."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class Hello:
    """A handler for either library: greets and returns."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        request.sendall(b"hello")


# -- 1. shutdown() hangs ---------------------------------------------------------------


@both("shutdown() waits forever when serve_forever never ran")
def test_shutdown_without_serve_forever_returns(lib: Any) -> None:
    server = lib.TCPServer((HOST, 0), Hello)
    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    stopper.join(0.5)
    returned = not stopper.is_alive()
    server.serve_forever()  # the pending request makes it return at once: releases the stdlib
    stopper.join(TIMEOUT)
    server.server_close()
    assert returned


@both("shutdown() from a synchronous handler deadlocks")
def test_shutdown_from_a_synchronous_handler_returns(lib: Any) -> None:
    class Stop(lib.BaseRequestHandler):  # type: ignore[name-defined,misc]
        def handle(self) -> None:
            self.server.shutdown()

    server = lib.TCPServer((HOST, 0), Stop)
    loop = start(server)
    socket.create_connection(server.server_address, timeout=TIMEOUT).close()
    loop.join(0.5)
    returned = not loop.is_alive()
    if not returned:
        server._BaseServer__is_shut_down.set()  # release socketserver's deadlock
        loop.join(TIMEOUT)
    server.server_close()
    assert returned


# -- 2. EMFILE on accept ---------------------------------------------------------------

EMFILE_SCRIPT = textwrap.dedent(
    """
    import importlib, json, os, resource, sys, threading, time
    lib = importlib.import_module(sys.argv[1])
    attempts = 0

    class Server(lib.TCPServer):
        request_queue_size = 16
        def get_request(self):
            global attempts
            attempts += 1
            return super().get_request()

    class Hello(lib.BaseRequestHandler):
        def handle(self):
            self.request.sendall(b"hello")

    server = Server(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    time.sleep(0.1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    hog = []
    try:
        while True:
            hog.append(os.dup(0))
    except OSError:
        pass
    print("READY", server.server_address[1], flush=True)
    sys.stdin.readline()                     # the client has connected
    cpu0, attempts0 = time.process_time(), attempts
    time.sleep(0.5)                          # out of descriptors
    cpu, spins = time.process_time() - cpu0, attempts - attempts0
    for fd in hog:
        os.close(fd)
    sys.stdin.readline()                     # the client got its reply (or gave up)
    print(json.dumps({"accepts_per_s": spins / 0.5, "cpu_per_s": cpu / 0.5}), flush=True)
    """
)


@both("accept() failing with EMFILE is retried in a busy loop, silently")
def test_descriptor_exhaustion_backs_off_logs_once_and_recovers(lib: Any) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", EMFILE_SCRIPT, lib.__name__],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline().split()[1])
        client = socket.create_connection((HOST, port), timeout=TIMEOUT)
        proc.stdin.write("connected\n")
        proc.stdin.flush()
        client.settimeout(3)
        try:
            reply = client.recv(10)
        except TimeoutError:
            reply = b""
        client.close()
        proc.stdin.write("done\n")
        proc.stdin.flush()
        stats = json.loads(proc.stdout.readline())
        stderr = proc.communicate(timeout=TIMEOUT)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert reply == b"hello", "the waiting client was served once descriptors were free"
    assert stats["accepts_per_s"] < 100, f"{stats['accepts_per_s']:.0f} failed accepts per second"
    assert stderr.count("pausing accepts") == 1, stderr


# -- 3. idle clients -------------------------------------------------------------------


class Chat:
    """Upper-cases lines until EOF (either library); ``started`` is set on arrival."""

    started = threading.Event()

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        Chat.started.set()
        with request.makefile("rb") as lines:
            for line in lines:
                request.sendall(line.upper())


def ask(address: Any, timeout: float = 1.0) -> bytes | None:
    with socket.create_connection(address, timeout=TIMEOUT) as client:
        client.settimeout(timeout)
        client.sendall(b"hi\n")
        try:
            return client.recv(10)
        except TimeoutError:
            return None


@both("one idle client starves a synchronous server; there is no idle timeout")
def test_idle_timeout_frees_a_synchronous_server(lib: Any) -> None:
    server_class = type("Server", (lib.TCPServer,), {"idle_timeout": 0.2})
    server_class.handle_error = lambda self, request, client_address: None
    server = server_class((HOST, 0), Chat)
    loop = start(server)
    idle = socket.create_connection(server.server_address, timeout=TIMEOUT)
    try:
        assert ask(server.server_address, timeout=1.5) == b"HI\n"
    finally:
        idle.close()
        server.shutdown()
        loop.join(TIMEOUT)
        server.server_close()


@pytest.mark.parametrize(
    ("server_class", "attributes"),
    [
        (minisocket.ThreadingTCPServer, {"daemon_threads": True}),
        # 16 workers and a queue that holds every idle client: each worker drops its
        # idle client after 0.05 s, so the newcomer's turn comes in about 0.65 s.
        (
            minisocket.ThreadPoolTCPServer,
            {"idle_timeout": 0.05, "max_workers": 16, "queue_size": 256},
        ),
        (minisocket.SelectorTCPServer, {}),
    ],
    ids=["threaded", "pool+idle_timeout", "select"],
)
def test_200_idle_clients_cannot_starve_a_new_one(
    server_class: Any, attributes: dict[str, Any]
) -> None:
    handler: Any = Chat
    if server_class is minisocket.SelectorTCPServer:
        handler = type(
            "Upper",
            (minisocket.ProtocolRequestHandler,),
            {"data_received": lambda self, d: self.send(d.upper())},
        )
    server = type("Server", (server_class,), attributes)((HOST, 0), handler)
    loop = start(server)
    idle = [socket.create_connection(server.server_address, timeout=TIMEOUT) for _ in range(200)]
    try:
        assert ask(server.server_address, timeout=TIMEOUT) == b"HI\n"
    finally:
        for client in idle:
            client.close()
        server.shutdown()
        loop.join(TIMEOUT)
        server.server_close()


# -- 4. server_close and live connections ----------------------------------------------


@both("server_close() waits forever for an idle client of a threading server")
def test_server_close_is_bounded_by_close_grace(lib: Any) -> None:
    server_class = type("Server", (lib.ThreadingTCPServer,), {"close_grace": 0.3})
    server_class.handle_error = lambda self, request, client_address: None
    server = server_class((HOST, 0), Chat)
    loop = start(server)
    Chat.started.clear()
    idle = socket.create_connection(server.server_address, timeout=TIMEOUT)
    assert Chat.started.wait(TIMEOUT)
    server.shutdown()
    loop.join(TIMEOUT)
    closer = threading.Thread(target=server.server_close, daemon=True)
    closer.start()
    closer.join(2.0)
    returned = not closer.is_alive()
    idle.close()  # releases socketserver
    closer.join(TIMEOUT)
    assert returned


@both("with daemon threads, connections are still served after server_close()")
def test_live_connections_end_after_the_grace_period(lib: Any) -> None:
    attributes = {"close_grace": 0.2, "daemon_threads": True}
    server_class = type("Server", (lib.ThreadingTCPServer,), attributes)
    server_class.handle_error = lambda self, request, client_address: None
    server = server_class((HOST, 0), Chat)
    loop = start(server)
    Chat.started.clear()
    with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
        assert Chat.started.wait(TIMEOUT)
        server.shutdown()
        loop.join(TIMEOUT)
        server.server_close()
        client.settimeout(1.5)
        try:
            ended = recv_all(client) == b""  # the server shut the connection down
        except TimeoutError:
            ended = False

    assert ended


# -- 5. ForkingMixIn at max_children ---------------------------------------------------


class Sleeper:
    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        time.sleep(float(request.recv(16)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@both("at max_children, waitpid(-1) blocks the loop: shutdown() waits for a child")
def test_forking_shutdown_does_not_wait_for_a_child(lib: Any) -> None:
    server = type("Server", (lib.ForkingTCPServer,), {"max_children": 1})((HOST, 0), Sleeper)
    loop = start(server)
    client = socket.create_connection(server.server_address, timeout=TIMEOUT)
    client.sendall(b"1.5")
    wait_until(lambda: server.active_children)  # the child sleeps; the loop is at capacity
    (child,) = server.active_children
    server.shutdown()
    still_running = os.waitpid(child, os.WNOHANG) == (0, 0) if _alive(child) else False
    loop.join(TIMEOUT)
    if still_running:
        os.kill(child, signal.SIGKILL)
    server.server_close()
    client.close()
    assert still_running, "shutdown() returned only after the child had exited"


def _alive(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return False


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@both("at max_children, waitpid(-1) reaps children the server did not start")
def test_forking_never_reaps_a_foreign_child(lib: Any) -> None:
    foreign = os.fork()
    if foreign == 0:
        time.sleep(0.3)
        os._exit(7)
    server = type("Server", (lib.ForkingTCPServer,), {"max_children": 1})((HOST, 0), Sleeper)
    loop = start(server)
    try:
        for _ in range(3):
            with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
                client.sendall(b"0.2")
                client.recv(1)
    finally:
        server.shutdown()
        loop.join(TIMEOUT)
        server.server_close()
    try:
        _, status = os.waitpid(foreign, 0)
    except ChildProcessError:
        pytest.fail("the server reaped a child it did not start")
    assert os.waitstatus_to_exitcode(status) == 7


# -- 6. UDP ----------------------------------------------------------------------------


@both("a datagram larger than max_packet_size reaches the handler truncated, silently")
def test_truncated_datagrams_are_not_delivered(lib: Any) -> None:
    seen: list[int] = []

    class Record(lib.DatagramRequestHandler):  # type: ignore[name-defined,misc]
        def handle(self) -> None:
            seen.append(len(self.rfile.read()))
            self.wfile.write(b"ok")

    server = lib.UDPServer((HOST, 0), Record)
    loop = start(server)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(TIMEOUT)
            client.sendto(b"x" * 10_000, server.server_address)  # max_packet_size is 8192
            client.sendto(b"small", server.server_address)
            assert client.recv(10) == b"ok"  # the small one is answered
    finally:
        server.shutdown()
        loop.join(TIMEOUT)
        server.server_close()
    assert seen == [5]


@both("DatagramRequestHandler sends an empty datagram when the handler wrote nothing")
def test_no_empty_reply(lib: Any) -> None:
    server = lib.UDPServer((HOST, 0), lib.DatagramRequestHandler)
    loop = start(server)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(0.3)
            client.sendto(b"anyone?", server.server_address)
            with pytest.raises(TimeoutError):
                client.recv(10)
    finally:
        server.shutdown()
        loop.join(TIMEOUT)
        server.server_close()


# -- 7. Unix socket files --------------------------------------------------------------


@both("a Unix stream server leaves its socket file behind: the path cannot be bound again")
def test_unix_path_can_be_bound_again(lib: Any, unix_path: str) -> None:
    for _ in range(2):
        server = lib.UnixStreamServer(unix_path, Hello)
        server.server_close()


# -- 8. IPv6 ---------------------------------------------------------------------------


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
@both("the default TCPServer cannot bind ('::1', 0)")
def test_ipv6_literal(lib: Any) -> None:
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"::1 unavailable here: {exc}")
    with lib.TCPServer(("::1", 0), Hello) as server:
        loop = start(server)
        try:
            with socket.create_connection(server.server_address[:2], timeout=TIMEOUT) as client:
                assert client.recv(10) == b"hello"
        finally:
            server.shutdown()
            loop.join(TIMEOUT)


# -- 9. unbounded input ----------------------------------------------------------------


@both("readline() has no limit: one endless line is buffered whole")
def test_readline_limit(lib: Any) -> None:
    longest: list[int] = []

    class Lines(lib.StreamRequestHandler):  # type: ignore[name-defined,misc]
        max_line_length = 1024

        def handle(self) -> None:
            longest.append(len(self.rfile.readline()))

    server_class = type("Server", (lib.TCPServer,), {})
    server_class.handle_error = lambda self, request, client_address: longest.append(-1)
    server = server_class((HOST, 0), Lines)
    loop = start(server)
    try:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            try:
                client.sendall(b"x" * 1_000_000)  # no newline
                client.shutdown(socket.SHUT_WR)
                recv_all(client)
            except OSError:
                pass  # the server gave up on the line and reset the connection: expected
    finally:
        server.shutdown()
        loop.join(TIMEOUT)
        server.server_close()
    assert longest == [-1], f"the handler read a line of {longest} bytes"


def test_select_server_output_buffer_is_bounded() -> None:
    lost: list[BaseException | None] = []

    class Flood(minisocket.ProtocolRequestHandler):
        max_buffered = 1 << 20

        def data_received(self, data: bytes) -> None:
            for _ in range(64):  # 64 MiB, never looking at transport.buffered
                self.send(b"x" * (1 << 20))

        def connection_lost(self, exc: Exception | None) -> None:
            lost.append(exc)

    server = minisocket.SelectorTCPServer((HOST, 0), Flood)
    loop = start(server)
    try:
        with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
            client.sendall(b"go")  # (from connection_made, the reset could beat connect())
            # Read only after the abort: a client reading while the handler sends could
            # keep every send() whole, and nothing would ever be buffered.
            wait_until(lambda: lost)
            with pytest.raises(ConnectionResetError):  # never a clean end after part of it
                recv_all(client)
    finally:
        server.shutdown()
        loop.join(TIMEOUT)
        server.server_close()
    assert len(lost) == 1 and isinstance(lost[0], BufferError)


# -- 10. start, then stop at once --------------------------------------------------


class Quiet(minisocket.ProtocolRequestHandler):
    pass


KINDS: dict[str, tuple[Any, Any]] = {
    "TCPServer": (minisocket.TCPServer, Hello),
    "UDPServer": (minisocket.UDPServer, Hello),
    "ThreadingTCPServer": (minisocket.ThreadingTCPServer, Hello),
    "ForkingTCPServer": (minisocket.ForkingTCPServer, Hello),
    "ThreadPoolTCPServer": (minisocket.ThreadPoolTCPServer, Hello),
    "SelectorTCPServer": (minisocket.SelectorTCPServer, Quiet),
}


@pytest.mark.parametrize("kind", KINDS)
def test_start_then_stop_a_thousand_times(kind: str) -> None:
    """A metrics library's start/stop helper: ``Thread(target=serve_forever).start();
    shutdown(); server_close()``, with no wait in between.  Every interleaving of the
    three is exercised by tests/test_loop.py; here, a thousand races, no exception."""
    server_class, handler = KINDS[kind]
    errors: list[BaseException] = []

    def serve(server: Any) -> None:
        try:
            server.serve_forever(0.05)
        except BaseException as exc:
            errors.append(exc)

    before = len(os.listdir("/proc/self/fd")), threading.active_count()
    for _ in range(1000):
        server = server_class((HOST, 0), handler)
        thread = threading.Thread(target=serve, args=(server,))
        thread.start()
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    assert errors == []
    assert (len(os.listdir("/proc/self/fd")), threading.active_count()) == before


# -- 11. descriptor limits -----------------------------------------------------------


def test_a_thread_pool_serves_with_a_thousand_descriptors_open() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [socket.socket() for _ in range(1020 - len(os.listdir("/proc/self/fd")))]
    try:
        server = minisocket.ThreadPoolTCPServer((HOST, 0), Hello)
        loop = start(server)
        try:
            with socket.create_connection(server.server_address, timeout=TIMEOUT) as client:
                assert recv_all(client) == b"hello"
        finally:
            server.shutdown()
            loop.join(TIMEOUT)
            server.server_close()
    finally:
        for sock in filler:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- 12. floods of warnings ----------------------------------------------------------


def test_a_flood_of_oversized_datagrams_is_logged_a_line_a_second_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Done(minisocket.DatagramRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"ok")  # to the small datagram that ends the flood

    server = type("Small", (minisocket.UDPServer,), {"max_packet_size": 16})((HOST, 0), Done)
    with caplog.at_level(logging.WARNING, logger="minisocket"):
        loop = start(server)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for _ in range(50_000):
                client.sendto(b"x" * 20, server.server_address)
            client.settimeout(0.1)
            for _ in range(100):  # datagrams may be dropped: ask until answered
                client.sendto(b"done", server.server_address)
                try:
                    assert client.recv(2) == b"ok"
                    break
                except TimeoutError:
                    pass
        server.shutdown()
        loop.join(TIMEOUT)
        server.server_close()  # logs the count still held back
    messages = [r.getMessage() for r in caplog.records]
    assert 0 < len(messages) <= 10  # a flood costs a few lines, not one per datagram
    held = [re.search(r"(\d+) more since", m) for m in messages]
    assert sum(int(m[1]) if m else 1 for m in held) == server.truncated > 100
