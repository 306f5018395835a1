"""Every exercise check accepts a right answer and rejects wrong ones.

A check that could not fail would tell a reader nothing, so each one is run here
against a reference answer (the verdict must be "solved"), the notebook's stub ("not
attempted yet"), and a plausible wrong answer.
"""

from __future__ import annotations

import socket
import socketserver
from collections.abc import Callable
from typing import Any

import pytest

import minisocket
from minisocket import lab
from minisocket.lab import exercises, solutions_03, solutions_04


def verdict(
    check: Callable[..., None], answer: Any, capsys: pytest.CaptureFixture[str], *more: Any
) -> str:
    check(answer, *more)
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


class ThreadingEchoServer(minisocket.ThreadingMixIn, minisocket.TCPServer):
    pass


class Backwards(minisocket.TCPServer, minisocket.ThreadingMixIn):
    pass


class LineCounter(minisocket.ProtocolRequestHandler):
    lines = 0

    def data_received(self, data: bytes) -> None:
        for _ in range(data.count(b"\n")):
            self.lines += 1
            self.send(b"%d\n" % self.lines)


class ChunkCounter(minisocket.ProtocolRequestHandler):
    """Wrong: counts data_received calls, not lines."""

    calls = 0

    def data_received(self, data: bytes) -> None:
        self.calls += 1
        self.send(b"%d\n" % self.calls)


def test_05_compose(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_05_compose, ThreadingEchoServer, capsys).endswith("solved")
    assert verdict(exercises.check_05_compose, Backwards, capsys).endswith("1/3 checks pass")
    assert verdict(exercises.check_05_compose, None, capsys).endswith("0/3 checks pass")


def test_05_line_counter(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(exercises.check_05_line_counter, LineCounter, capsys).endswith("solved")
    out = verdict(exercises.check_05_line_counter, ChunkCounter, capsys)
    assert not out.endswith("solved")
