"""Layer 02: serve_forever, shutdown, handle_request -- with a stub pipeline."""

from __future__ import annotations

import math
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from conftest import HOST, TIMEOUT

from minisocket.loop import ServeLoop, Waker, _Selector
from minisocket.sockets import StreamSocketMixIn


class CountingLoop(StreamSocketMixIn, ServeLoop):
    """The loop over a real listening socket; the 'pipeline' just accepts and closes."""

    def __init__(self) -> None:
        super().__init__((HOST, 0), object)
        self.handled = 0
        self.actions = 0
        self.timeouts = 0
        self.on_request: object = None

    def _handle_request_noblock(self) -> None:
        request, _ = self.get_request()
        request.close()
        self.handled += 1
        if callable(self.on_request):
            self.on_request()

    def service_actions(self) -> None:
        self.actions += 1

    def handle_timeout(self) -> None:
        self.timeouts += 1


def start(server: ServeLoop, poll_interval: float = 0.5) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, args=(poll_interval,), daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not server.serving:
        assert time.monotonic() < deadline, "serve_forever did not start"
        time.sleep(0.001)
    return thread


def test_serves_until_shutdown_then_returns() -> None:
    with CountingLoop() as server:
        thread = start(server)
        for _ in range(3):
            socket.create_connection(server.server_address, timeout=TIMEOUT).close()
        deadline = time.monotonic() + TIMEOUT
        while server.handled < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert server.handled == 3
        assert server.actions >= 3  # once per loop iteration
        server.shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive() and not server.serving


def test_shutdown_does_not_wait_for_the_poll_interval() -> None:
    # Behaviour, not timing: with a one-hour poll interval, only the waker can end
    # the select.  If shutdown relied on polling this test would hang until the
    # join timeout and fail.
    with CountingLoop() as server:
        thread = start(server, poll_interval=3600)
        server.shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_shutdown_without_serve_forever_returns_and_stays_pending() -> None:
    with CountingLoop() as server:
        done = threading.Event()
        threading.Thread(target=lambda: (server.shutdown(), done.set()), daemon=True).start()
        assert done.wait(TIMEOUT), "shutdown() hung with no serve_forever running"
        # The request is pending: a serve_forever that starts now returns at once, which
        # is what lets `t.start(); server.shutdown()` work without a race.
        thread = threading.Thread(target=server.serve_forever, args=(3600,), daemon=True)
        thread.start()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        # ...and the request was consumed: the next serve_forever serves again.
        thread = start(server, poll_interval=3600)
        server.shutdown()
        thread.join(TIMEOUT)


def test_shutdown_from_the_serving_thread_does_not_deadlock() -> None:
    with CountingLoop() as server:
        server.on_request = server.shutdown  # as a synchronous handler would
        thread = start(server, poll_interval=3600)
        socket.create_connection(server.server_address, timeout=TIMEOUT).close()
        thread.join(TIMEOUT)
        assert not thread.is_alive()
        assert server.handled == 1


def test_serve_forever_twice_at_once_is_an_error() -> None:
    with CountingLoop() as server:
        thread = start(server)
        with pytest.raises(RuntimeError, match="already running"):
            server.serve_forever()
        server.shutdown()
        thread.join(TIMEOUT)


def test_handle_request_serves_one() -> None:
    with CountingLoop() as server:
        socket.create_connection(server.server_address, timeout=TIMEOUT).close()
        server.handle_request()
        assert (server.handled, server.timeouts) == (1, 0)


def test_handle_request_times_out() -> None:
    with CountingLoop() as server:
        server.timeout = 0.01
        server.handle_request()
        assert (server.handled, server.timeouts) == (0, 1)


@pytest.mark.parametrize(
    ("own", "sockets", "expected"),
    [(None, None, None), (2.0, None, 2.0), (None, 3.0, 3.0), (2.0, 3.0, 2.0), (4.0, 3.0, 3.0)],
)
def test_request_timeout_is_the_smaller_of_both(
    own: float | None, sockets: float | None, expected: float | None
) -> None:
    with CountingLoop() as server:
        server.timeout = own
        server.socket.settimeout(sockets)
        assert server._request_timeout() == expected


def test_pause_is_cut_short_by_shutdown() -> None:
    with CountingLoop() as server:
        paused = threading.Event()
        server.on_request = lambda: (paused.set(), server.pause(3600))
        thread = start(server)
        socket.create_connection(server.server_address, timeout=TIMEOUT).close()
        assert paused.wait(TIMEOUT)
        server.shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_waker_wakes_many_times_and_drains() -> None:
    waker = Waker()
    try:
        for _ in range(100_000):  # more than the socket buffer holds: must not block
            waker.wake()
        waker.drain()
        with pytest.raises(BlockingIOError):
            waker._reader.recv(1)
    finally:
        waker.close()


def test_the_loop_alone_has_no_pipeline() -> None:
    class Bare(StreamSocketMixIn, ServeLoop):
        pass

    with Bare((HOST, 0), object) as server, pytest.raises(NotImplementedError):
        server._handle_request_noblock()


class RecordingSelector(_Selector):  # type: ignore[misc,valid-type]
    """The loop's default selector, keeping the timeout of every select() call."""

    timeouts: list[float | None]

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        type(self).timeouts.append(timeout)
        return super().select(timeout)


def recording_loop(busy_poll: float) -> CountingLoop:
    recorder = type("Recorder", (RecordingSelector,), {"timeouts": []})
    server = CountingLoop()
    server.selector_class = recorder
    server.busy_poll = busy_poll
    return server


def wait_for(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


@contextmanager
def running(server: ServeLoop, poll_interval: float = 0.5) -> Iterator[None]:
    """serve_forever in a thread for the block; stopped and joined even if it fails."""
    thread = start(server, poll_interval)
    try:
        yield
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def test_without_busy_poll_the_loop_always_sleeps() -> None:
    with recording_loop(0.0) as server:
        with running(server, poll_interval=0.2):
            socket.create_connection(server.server_address, timeout=TIMEOUT).close()
            wait_for(lambda: server.handled == 1)
        timeouts = server.selector_class.timeouts  # type: ignore[attr-defined]
        assert timeouts and set(timeouts) == {0.2}


def test_busy_poll_spins_after_traffic_then_sleeps() -> None:
    with recording_loop(0.02) as server:
        timeouts = server.selector_class.timeouts  # type: ignore[attr-defined]
        with running(server, poll_interval=0.2):
            wait_for(lambda: len(timeouts) >= 1)
            idle_before = list(timeouts)
            socket.create_connection(server.server_address, timeout=TIMEOUT).close()
            wait_for(lambda: server.handled == 1)
            # Nothing else arrives: after at most 20 ms of polling the loop sleeps again,
            # for what is left of the poll interval.
            wait_for(lambda: 0 in timeouts and timeouts[-1] != 0)
        assert set(idle_before) == {0.2}  # an idle loop never spins
        first_spin = timeouts.index(0)
        spins = timeouts[first_spin:]
        sleep_after = next(i for i, t in enumerate(spins) if t != 0)
        assert sleep_after >= 1 and set(spins[:sleep_after]) == {0}
        assert spins[sleep_after] == pytest.approx(0.2 - 0.02)


def test_busy_poll_never_delays_service_actions_past_the_poll_interval() -> None:
    # An hour of busy polling, a 50 ms poll interval: service_actions() keeps coming.
    with recording_loop(3600.0) as server, running(server, poll_interval=0.05):
        socket.create_connection(server.server_address, timeout=TIMEOUT).close()
        wait_for(lambda: server.handled == 1)
        actions = server.actions
        wait_for(lambda: server.actions >= actions + 3)


def test_shutdown_interrupts_a_busy_poll() -> None:
    # A one-hour budget: only the waker, seen by the zero-timeout polls, can end it
    # (running() fails if serve_forever has not returned after the shutdown).
    with recording_loop(3600.0) as server, running(server):
        socket.create_connection(server.server_address, timeout=TIMEOUT).close()
        wait_for(lambda: server.handled == 1)
        wait_for(lambda: 0 in server.selector_class.timeouts)  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [-1e-6, math.nan])
def test_busy_poll_must_be_a_duration(bad: float) -> None:
    with CountingLoop() as server:
        server.busy_poll = bad
        with pytest.raises(ValueError, match="busy_poll"):
            server.serve_forever()
        assert not server.serving
