"""Every exercise check accepts a right answer and rejects wrong ones.

A check that could not fail would tell a reader nothing, so each one is run here
against a reference answer (the verdict must be "solved"), the notebook's stub ("not
attempted yet"), and a plausible wrong answer.
"""

from __future__ import annotations

import functools
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import minisocket
from minisocket import lab
from minisocket.lab import (
    exercises,
    solutions_01,
    solutions_02,
    solutions_03,
    solutions_04,
    solutions_05,
    solutions_06,
)


def verdict(
    check: Callable[..., None], answer: Any, capsys: pytest.CaptureFixture[str], *more: Any
) -> str:
    check(answer, *more)
    return capsys.readouterr().out.strip().splitlines()[-1]


# -- 01 -------------------------------------------------------------------------------


class KeepAliveForgetsAddress(minisocket.TCPServer):
    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.socket.bind(self.server_address)


class Stub01(minisocket.TCPServer):
    def server_bind(self) -> None:
        raise NotImplementedError


def test_01_keepalive(capsys: pytest.CaptureFixture[str]) -> None:
    answer = solutions_01.KeepAliveTCPServer
    assert verdict(exercises.check_01_keepalive, answer, capsys) == "Exercise 1: solved"
    assert verdict(exercises.check_01_keepalive, KeepAliveForgetsAddress, capsys).endswith(
        "1/3 checks pass"
    )
    assert verdict(exercises.check_01_keepalive, Stub01, capsys).endswith("0/3 checks pass")


class LateReuse(minisocket.TCPServer):
    """The notebook's broken server: the option comes after bind() has failed."""

    def server_activate(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        super().server_activate()


class ReuseBeforeBind(minisocket.TCPServer):
    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        super().server_bind()


def test_01_restart(capsys: pytest.CaptureFixture[str]) -> None:
    def check(server_class: Any, prediction: Any) -> str:
        exercises.check_01_restart(server_class, prediction)
        return capsys.readouterr().out.strip().splitlines()[-1]

    reference = solutions_01.RestartableServer, solutions_01.PREDICTION
    assert check(*reference) == "Exercise 2: solved"
    assert check(ReuseBeforeBind, "eaddrinuse") == "Exercise 2: solved"
    # The notebook as committed: no prediction yet, the broken class.
    exercises.check_01_restart(LateReuse, None)
    out = capsys.readouterr().out
    assert "not attempted yet" in out and out.strip().endswith("0/3 checks pass")
    # A right prediction, the class still broken: the socket has the option, too late.
    assert check(LateReuse, "EADDRINUSE").endswith("2/3 checks pass")
    assert check(solutions_01.RestartableServer, "ECONNREFUSED").endswith("2/3 checks pass")


# -- 02 -------------------------------------------------------------------------------


class ShutdownOnTheServingThread:
    """The old reference answer: fine under minisocket, a deadlock under socketserver."""

    handled = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        super().process_request(request, client_address)  # type: ignore[misc]
        self.handled += 1

    def service_actions(self) -> None:
        if self.handled >= 3:
            self.shutdown()  # type: ignore[attr-defined]


class StopAfterTwo(solutions_02.StopAfterThree):
    def service_actions(self) -> None:
        if self.handled == 2:
            self.handled = 3  # the reference then stops: one request too early
        super().service_actions()


class StubStop:
    def process_request(self, request: Any, client_address: Any) -> None:
        raise NotImplementedError

    def service_actions(self) -> None:
        raise NotImplementedError


def test_02_stop_after_three(capsys: pytest.CaptureFixture[str]) -> None:
    check = exercises.check_02_stop_after_three
    assert verdict(check, solutions_02.StopAfterThree, capsys) == "Exercise 1: solved"
    out = verdict(check, ShutdownOnTheServingThread, capsys)
    assert out.endswith("4/5 checks pass"), out  # socketserver deadlocks after the third
    # It stops after two: the third client is never answered, and it did not keep serving.
    assert verdict(check, StopAfterTwo, capsys).endswith("1/5 checks pass")
    assert verdict(check, StubStop, capsys).endswith("0/5 checks pass")


class CountsPasses(minisocket.ThreadingTCPServer):
    """The notebook's broken counter: one pass of the loop is not one request."""

    requests = 0

    def service_actions(self) -> None:
        super().service_actions()
        self.requests += 1


class CountsAccepts(minisocket.ThreadingTCPServer):
    """Counts a request when it starts, not when it is finished."""

    requests = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.requests += 1
        super().process_request(request, client_address)


def test_02_count_requests(capsys: pytest.CaptureFixture[str]) -> None:
    check = exercises.check_02_count_requests
    assert verdict(check, solutions_02.RequestCounter, capsys) == "Exercise 2: solved"
    assert verdict(check, CountsPasses, capsys).endswith("0/2 checks pass")
    assert verdict(check, CountsAccepts, capsys).endswith("1/2 checks pass")


def serve_once(server: Any, quiet: float) -> int:
    server.handle_request()
    return 1


def test_02_serve_until_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    check = exercises.check_02_serve_until_quiet
    assert verdict(check, solutions_02.serve_until_quiet, capsys) == "Exercise 3: solved"
    assert verdict(check, serve_once, capsys).endswith("0/1 checks pass")


# -- 03 -------------------------------------------------------------------------------


def test_03_which_thread(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_03_which_thread, solutions_03.prediction, capsys).endswith(
        "solved"
    )
    everything_on_the_loop = dict.fromkeys(solutions_03.prediction, "loop")
    assert verdict(exercises.check_03_which_thread, everything_on_the_loop, capsys).endswith(
        "2/3 checks pass"
    )
    stub = dict.fromkeys(solutions_03.prediction, ...)
    assert verdict(exercises.check_03_which_thread, stub, capsys).endswith("0/3 checks pass")


def test_03_which_thread_reference_trace() -> None:
    table = solutions_03.trace_a_failing_request()
    assert "handle_error       handler-1" in table
    assert "verify_request     loop" in table


def test_03_close_hang(capsys: pytest.CaptureFixture[str]) -> None:
    solved = verdict(
        exercises.check_03_close_hang, solutions_03.why, capsys, solutions_03.QuickToClose
    )
    assert solved.endswith("solved")
    # The stdlib's own class hangs (for the check's 2 s) but still answers.
    unfixed = verdict(exercises.check_03_close_hang, "B", capsys, socketserver.ThreadingTCPServer)
    assert unfixed.endswith("2/3 checks pass")
    assert verdict(exercises.check_03_close_hang, None, capsys, None).endswith("0/3 checks pass")


# -- the trace helpers notebook 03 draws with -----------------------------------------


class _Hello(minisocket.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"hello")


def test_trace_helpers_name_threads_and_show_the_loop_waiting() -> None:
    server = lab.trace_select(minisocket.ThreadingTCPServer(("127.0.0.1", 0), _Hello))
    server.tracer = recorder = minisocket.TraceRecorder()
    with minisocket.serving(server, poll_interval=10):
        assert lab.converse(server.server_address) == b"hello"
        assert lab.wait_until(lambda: "close_request" in recorder.steps())
    roles = lab.thread_roles(recorder.events)
    assert sorted(roles.values()) == ["handler-1", "loop", "main"]  # main: shutdown()
    table = lab.trace_table(recorder.events, header=True, only=("select", "handle", "shutdown"))
    rows = [row.split() for row in table.splitlines()]
    assert rows[0] == ["step", "thread", "client", "detail"]
    assert ["handle", "handler-1", "client-1"] in rows
    assert ["select", "loop", "-", "waiting"] in rows and [
        "shutdown",
        "main",
        "-",
        "waiting",
    ] in rows
    assert "select" not in lab.trace_table(recorder.events, skip=("select",))

    figure = pytest.importorskip("matplotlib.figure")
    ax = figure.Figure().subplots()
    lab.sequence_diagram(ax, recorder.events, "ThreadingTCPServer")
    assert ax.get_ylabel().startswith("order of events")
    assert ax.patches, "the loop's wait in select is drawn as a bar"


# -- 04 -------------------------------------------------------------------------------


class EchoWithoutUpper(minisocket.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.request.sendall(data)


class AdderWithoutErrors(minisocket.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(b"%d\n" % sum(int(word) for word in line.split()))


def test_04_upper_echo(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_04_upper_echo, solutions_04.UpperEcho, capsys).endswith("solved")
    assert verdict(exercises.check_04_upper_echo, EchoWithoutUpper, capsys).endswith(
        "2/3 checks pass"
    )


def test_04_adder(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_04_adder, solutions_04.Adder, capsys).endswith("solved")
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
