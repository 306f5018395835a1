"""Kernel-side tests of the server panel: the same code a click in JupyterLab runs.

ipywidgets works without a frontend (nothing is displayed), and ``Button.click()``
calls the handlers exactly as a click would.  After every panel is closed, the process
has as many descriptors, threads and children as before.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("ipywidgets")

from minisocket.lab import open_fds, widgets


@pytest.fixture(scope="module", autouse=True)
def warm_up() -> None:
    """matplotlib keeps a few files open after its first use; count from after that."""
    widgets._histogram_png([1.0, 2.0, 3.0], "warm-up")


@pytest.fixture
def baseline() -> Iterator[tuple[int, int]]:
    widgets.close_all()
    time.sleep(0.05)
    before = (open_fds(), threading.active_count())
    yield before
    widgets.close_all()


def settle(before: tuple[int, int]) -> tuple[int, int]:
    """Descriptor and thread counts, once threads that are ending have ended."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = (open_fds(), threading.active_count())
        if now == before:
            break
        time.sleep(0.02)
    return now


@pytest.mark.parametrize("kind", list(widgets.KINDS))
def test_start_send_stop_leaves_nothing_behind(kind: str, baseline: tuple[int, int]) -> None:
    panel = widgets.ServerPanel(name="test", kind=kind, handler="upper")
    panel.start_button.click()
    assert panel.running and "running" in panel.status.value
    assert panel.start_button.disabled and not panel.stop_button.disabled
    panel.line.value = "hello from a test"
    panel.send_button.click()
    assert panel.reply.value == "&rarr; <code>HELLO FROM A TEST</code>"
    deadline = time.monotonic() + 5
    while "get_request" not in panel.log_view.value and time.monotonic() < deadline:
        time.sleep(0.02)  # the pump redraws the log at most every 0.1 s
    assert "get_request" in panel.log_view.value
    panel.stop_button.click()
    assert not panel.running and panel.status.value == "stopped"
    panel.close()
    assert settle(baseline) == baseline
    if kind == "forking":
        with pytest.raises(ChildProcessError):
            os.waitpid(-1, os.WNOHANG)  # no child left behind, reaped or not


def test_start_twice_and_stop_twice_are_harmless(baseline: tuple[int, int]) -> None:
    panel = widgets.ServerPanel(name="twice", kind="select")
    panel.start()
    address = panel.server.server_address
    panel.start()  # the button is disabled in the page, but the method may be called
    assert panel.server.server_address == address and "already running" in panel.status.value
    panel.stop()
    panel.stop()
    panel.close()
    assert settle(baseline) == baseline


def test_a_new_panel_with_the_same_name_replaces_the_old_one(baseline: tuple[int, int]) -> None:
    first = widgets.ServerPanel(name="cell")
    first.start()
    second = widgets.ServerPanel(name="cell")  # as when the cell runs again
    assert not first.running
    second.start()
    assert second.send() == "HELLO, MINISOCKET"
    second.close()
    assert settle(baseline) == baseline


def test_load_reports_latencies_and_draws_a_histogram(baseline: tuple[int, int]) -> None:
    panel = widgets.ServerPanel(name="load", kind="threaded", handler="echo")
    panel.start()
    panel.clients.value = 12
    latencies = panel.load()
    assert len(latencies) == 12 and all(ms > 0 for ms in latencies)
    assert panel.summary.value.startswith("12 of 12 answered (median ")
    assert "p99" not in panel.summary.value  # not from twelve samples
    assert "interpreter lock" in panel.summary.value  # it says what it timed, and how
    assert panel.histogram.value[:8] == b"\x89PNG\r\n\x1a\n"
    panel.close()
    assert settle(baseline) == baseline


def test_slow_handler_on_the_select_server_stalls_everyone(baseline: tuple[int, int]) -> None:
    panel = widgets.ServerPanel(name="slow", kind="select", handler="slow")
    panel.start()
    panel.clients.value = 5
    latencies = panel.load()
    # One thread, 0.2 s per line: the fifth client waits for the four before it.
    assert max(latencies) >= 5 * widgets.SLOW_SECONDS * 1000 * 0.9
    panel.close()


def test_listening_beyond_loopback_needs_to_be_asked_for() -> None:
    with pytest.raises(ValueError, match="allow_remote=True"):
        widgets.ServerPanel(name="remote", host="0.0.0.0")
    panel = widgets.ServerPanel(name="remote", host="0.0.0.0", allow_remote=True)
    try:
        assert not panel.running  # it does not start until asked; then it warns
    finally:
        panel.close()


def test_controls_have_stable_css_classes() -> None:
    panel = widgets.ServerPanel(name="css")
    try:
        classes = {
            c
            for w in (
                panel.start_button,
                panel.stop_button,
                panel.send_button,
                panel.line,
                panel.log_view,
                panel.status,
                panel.load_button,
            )
            for c in w._dom_classes
        }
        assert {
            "minisocket-start",
            "minisocket-stop",
            "minisocket-send",
            "minisocket-input",
            "minisocket-log",
            "minisocket-status",
            "minisocket-load",
        } <= classes
        assert "minisocket-panel" in panel._dom_classes
    finally:
        panel.close()


def test_start_clears_the_previous_servers_results(baseline: tuple[int, int]) -> None:
    panel = widgets.ServerPanel(name="again", kind="threaded", handler="echo")
    panel.start()
    panel.load()
    panel.stop()
    assert panel.summary.value and panel.histogram.layout.display is None
    panel.kind.value = "select"
    panel.start()
    assert panel.summary.value == "" and panel.histogram.layout.display == "none"
    assert panel.requests() == []  # the new server's log starts empty
    panel.close()
    assert settle(baseline) == baseline


@pytest.mark.parametrize(
    ("kind", "own_thread"),
    [
        ("blocking", ""),
        ("select", ""),
        ("threaded", "finish_request setup handle finish shutdown_request close_request"),
        ("pool", "finish_request setup handle finish shutdown_request close_request"),
    ],
)
def test_the_request_view_shows_which_thread_ran_each_step(
    kind: str, own_thread: str, baseline: tuple[int, int]
) -> None:
    panel = widgets.ServerPanel(name="view", kind=kind, handler="echo")
    panel.start()
    panel.clients.value = 3
    panel.load()
    panel.stop()  # the handlers have finished: every step is in
    views = panel.requests()
    assert len(views) == 3 and len(set(views)) == 1  # the same for every request
    serving, own = views[0]
    assert serving.startswith("get_request verify_request process_request")
    assert own == own_thread
    assert "on the request's own thread" in panel.request_view.value
    assert panel.log_view.value.startswith("<pre>  time s  thread")  # columns labelled
    panel.close()
    assert settle(baseline) == baseline
