"""Every exercise check accepts a right answer and rejects wrong ones.

A check that could not fail would tell a reader nothing, so each one is run here
against a reference answer (the verdict must be "solved"), the notebook's stub ("not
attempted yet"), and a plausible wrong answer.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import minisocket
from minisocket.lab import exercises, solutions_05, solutions_06


def verdict(check: Callable[..., None], answer: Any, capsys: pytest.CaptureFixture[str]) -> str:
    check(answer)
    return capsys.readouterr().out.strip().splitlines()[-1]


# -- 01 -------------------------------------------------------------------------------


class KeepAlive(minisocket.TCPServer):
    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        super().server_bind()


class KeepAliveForgetsAddress(minisocket.TCPServer):
    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.socket.bind(self.server_address)


class Stub01(minisocket.TCPServer):
    def server_bind(self) -> None:
        raise NotImplementedError


def test_01_keepalive(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_01_keepalive, KeepAlive, capsys) == "Exercise 1: solved"
    assert verdict(exercises.check_01_keepalive, KeepAliveForgetsAddress, capsys).endswith(
        "1/3 checks pass"
    )
    assert verdict(exercises.check_01_keepalive, Stub01, capsys).endswith("0/3 checks pass")


def test_01_backlog(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_01_backlog, 3, capsys) == "Exercise 2: solved"
    assert verdict(exercises.check_01_backlog, 2, capsys).endswith("0/1 checks pass")
    exercises.check_01_backlog(None)
    assert "not attempted yet" in capsys.readouterr().out


# -- 02 -------------------------------------------------------------------------------


class StopAfterThree(minisocket.TCPServer):
    handled = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        super().process_request(request, client_address)
        self.handled += 1

    def service_actions(self) -> None:
        if self.handled >= 3:
            self.shutdown()  # on the serving thread: minisocket does not deadlock


class StopAfterTwo(StopAfterThree):
    def service_actions(self) -> None:
        if self.handled >= 2:
            self.shutdown()


def test_02_stop_after_three(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_02_stop_after_three, StopAfterThree, capsys).endswith("solved")
    # It stops after two: the third client is never answered, and it did not keep serving.
    assert verdict(exercises.check_02_stop_after_three, StopAfterTwo, capsys).endswith(
        "1/3 checks pass"
    )


def serve_until_quiet(server: Any, quiet: float) -> int:
    served = 0
    timed_out = False

    def on_timeout() -> None:
        nonlocal timed_out
        timed_out = True

    server.timeout = quiet
    server.handle_timeout = on_timeout
    while True:
        server.handle_request()
        if timed_out:
            return served
        served += 1


def serve_once(server: Any, quiet: float) -> int:
    server.handle_request()
    return 1


def test_02_serve_until_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_02_serve_until_quiet, serve_until_quiet, capsys).endswith(
        "solved"
    )
    assert verdict(exercises.check_02_serve_until_quiet, serve_once, capsys).endswith(
        "0/1 checks pass"
    )


# -- 03 -------------------------------------------------------------------------------


class LocalOnly(minisocket.TCPServer):
    def verify_request(self, request: Any, client_address: Any) -> bool:
        return bool(client_address[0] == "127.0.0.2")


class Everyone(minisocket.TCPServer):
    pass


class Counting(minisocket.TCPServer):
    errors = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors += 1


def test_03_allow_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_03_allow_list, LocalOnly, capsys).endswith("solved")
    assert verdict(exercises.check_03_allow_list, Everyone, capsys).endswith("1/2 checks pass")


def test_03_count_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_03_count_errors, Counting, capsys).endswith("solved")
    assert verdict(exercises.check_03_count_errors, Everyone, capsys).endswith("0/2 checks pass")


# -- 04 -------------------------------------------------------------------------------


class UpperEcho(minisocket.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.request.sendall(data.upper())


class Adder(minisocket.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            try:
                total = sum(int(word) for word in line.split())
            except ValueError:
                self.wfile.write(b"ERR\n")
            else:
                self.wfile.write(b"%d\n" % total)


class AdderWithoutErrors(minisocket.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(b"%d\n" % sum(int(word) for word in line.split()))


def test_04_upper_echo(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_04_upper_echo, UpperEcho, capsys).endswith("solved")


def test_04_adder(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_04_adder, Adder, capsys).endswith("solved")
    assert verdict(exercises.check_04_adder, AdderWithoutErrors, capsys).endswith("2/3 checks pass")


# -- 05 -------------------------------------------------------------------------------


class Backwards(minisocket.TCPServer, minisocket.ThreadingMixIn):
    pass


def test_05_predict_backwards(capsys: pytest.CaptureFixture[str]) -> None:
    check = functools.partial(exercises.check_05_predict_backwards, Backwards)
    assert verdict(check, solutions_05.BACKWARDS_PREDICTION, capsys) == "Exercise 1: solved"
    as_if_order_did_not_matter = {
        "process_request": "ThreadingMixIn",
        "server_close": "ThreadingMixIn",
        "concurrent": True,
    }
    assert verdict(check, as_if_order_did_not_matter, capsys).endswith("1/4 checks pass")
    check(dict.fromkeys(solutions_05.BACKWARDS_PREDICTION))
    out = capsys.readouterr().out
    assert "not attempted yet" in out and out.endswith("0/4 checks pass\n")


class CountedPid(minisocket.BaseRequestHandler):
    """The notebook's handler: counts in the server it sees (in a child: a copy)."""

    def handle(self) -> None:
        self.server.served += 1
        self.request.sendall(str(os.getpid()).encode())


class CountsInTheChild(minisocket.ForkingTCPServer):
    """The notebook's starting point."""

    served = 0


class CountsInThreads(minisocket.ThreadingTCPServer):
    """Counts, but gave up forking to do it."""

    served = 0


def test_05_fork_counter(capsys: pytest.CaptureFixture[str]) -> None:
    check = functools.partial(exercises.check_05_fork_counter, handler_class=CountedPid)
    assert verdict(check, solutions_05.CountingForkingServer, capsys) == "Exercise 2: solved"
    assert verdict(check, CountsInTheChild, capsys).endswith("2/3 checks pass")
    assert verdict(check, CountsInThreads, capsys).endswith("2/3 checks pass")


def times_shutdown_instead(handler_class: type[Any], close_grace: float) -> float:
    """Wrong: measures shutdown(), which does not wait for the handlers."""
    server = minisocket.ThreadingTCPServer(("127.0.0.1", 0), handler_class)
    server.close_grace, server.entered = close_grace, threading.Event()
    loop = threading.Thread(target=server.serve_forever, args=(0.05,))
    loop.start()
    with socket.create_connection(server.server_address, timeout=5):
        server.entered.wait(5)
        started = time.monotonic()
        server.shutdown()
        took = time.monotonic() - started
        loop.join()
        server.server_close()
    return took


def stub_close_time(handler_class: type[Any], close_grace: float) -> float:
    raise NotImplementedError


def test_05_close_time(capsys: pytest.CaptureFixture[str]) -> None:
    rule = solutions_05.MULTIPLE_OF_CLOSE_GRACE
    check = exercises.check_05_close_time
    assert verdict(lambda f: check(f, rule), solutions_05.close_time, capsys).endswith("solved")
    assert verdict(lambda f: check(f, rule), times_shutdown_instead, capsys).endswith(
        "2/4 checks pass"
    )
    wrong_rule = {"idle client": 1, "stuck handler": 1}
    assert verdict(lambda r: check(solutions_05.close_time, r), wrong_rule, capsys).endswith(
        "3/4 checks pass"
    )
    assert verdict(lambda f: check(f, rule), stub_close_time, capsys).endswith("0/4 checks pass")


# -- 06 -------------------------------------------------------------------------------


def test_06_predict_pool(capsys: pytest.CaptureFixture[str]) -> None:
    check = exercises.check_06_predict_pool
    assert verdict(check, solutions_06.POOL_PREDICTION, capsys) == "Exercise 1: solved"
    as_if_the_queue_were_unbounded = ["served"] * 4 + ["queued"] * 4
    assert verdict(check, as_if_the_queue_were_unbounded, capsys).endswith("2/4 checks pass")
    assert verdict(check, [None] * 8, capsys).endswith("0/4 checks pass")


class ChunkCounter(minisocket.ProtocolRequestHandler):
    """Wrong: counts data_received calls, not lines."""

    calls = 0

    def data_received(self, data: bytes) -> None:
        self.calls += 1
        self.send(b"%d\n" % self.calls)


class StubCounter(minisocket.ProtocolRequestHandler):
    def data_received(self, data: bytes) -> None:
        raise NotImplementedError


def test_06_line_counter(capsys: pytest.CaptureFixture[str]) -> None:
    check = exercises.check_06_line_counter
    assert verdict(check, solutions_06.LineCounter, capsys) == "Exercise 2: solved"
    assert not verdict(check, ChunkCounter, capsys).endswith("solved")
    assert verdict(check, StubCounter, capsys).endswith("0/4 checks pass")


class AllAtOnce(minisocket.ProtocolRequestHandler):
    """The notebook's starting point: ignores pause_writing."""

    high_water, low_water = 64 * 1024, 16 * 1024

    def connection_made(self) -> None:
        for n in range(200_000):
            self.send(b"%d\n" % n)
        self.close()


class NeverCloses(solutions_06.Numbers):
    """Pauses properly, but never ends the connection."""

    def close(self) -> None:
        pass


class StubNumbers(minisocket.ProtocolRequestHandler):
    def connection_made(self) -> None:
        raise NotImplementedError


def test_06_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    check = exercises.check_06_numbers
    assert verdict(check, solutions_06.Numbers, capsys) == "Exercise 3: solved"
    assert verdict(check, AllAtOnce, capsys).endswith("3/4 checks pass")
    assert verdict(check, NeverCloses, capsys).endswith("3/4 checks pass")
    assert verdict(check, StubNumbers, capsys).endswith("0/4 checks pass")
