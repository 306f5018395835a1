"""Shared test helpers: servers on loopback, port 0, always stopped and closed.

Tests talk to servers through what a user sees: bytes on the wire, log records and
trace events.  :class:`Steps` is a tracer a test can *wait on* ("until the loop has
started", "until three requests were shut down"), so no test sleeps to synchronise.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from minisocket import TraceEvent, serving

__all__ = ["HOST", "REQUEST_STEPS", "TIMEOUT", "Steps", "converse", "recv_all", "serving"]

HOST = "127.0.0.1"
TIMEOUT = 10.0  # seconds any single wait in a test may take

# The traced steps of one request through a blocking handler, in order.
REQUEST_STEPS = [
    "get_request",
    "verify_request",
    "process_request",
    "finish_request",
    "setup",
    "handle",
    "finish",
]


def recv_all(sock: socket.socket) -> bytes:
    """Read until the peer closes its side (each read bounded by the socket's timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def converse(address: Any, *messages: bytes, family: int = socket.AF_INET) -> bytes:
    """Connect, send each message, half-close, and return everything received."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(address)
        for message in messages:
            sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


class Steps:
    """A tracer that records every event and lets a test wait for one.

    ``wait("serve_forever")`` returns once that step has been traced; with *count*, once
    it has been traced that many times.  It fails the test after ``TIMEOUT``.
    """

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []
        self.changed = threading.Condition()
        self.pid = os.getpid()

    def __call__(self, event: TraceEvent) -> None:
        if os.getpid() != self.pid:
            return  # a forked child: its copy of the lock may be held by a thread it lacks
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def count(self, step: str) -> int:
        return sum(event.step == step for event in self.events)

    def wait(self, step: str, count: int = 1) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: self.count(step) >= count, TIMEOUT):
                raise AssertionError(f"{step!r} was traced {self.count(step)} times, not {count}")

    def steps(self, *skip: str) -> list[str]:
        return [event.step for event in self.events if event.step not in skip]


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short temporary directory: AF_UNIX paths must fit in 108 bytes."""
    path = tempfile.mkdtemp(prefix="ms-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def unix_path(short_tmp: str) -> str:
    return os.path.join(short_tmp, "sock")


def open_fds() -> int:
    """How many descriptors this process has open (Linux: /proc/self/fd)."""
    return len(os.listdir("/proc/self/fd"))
