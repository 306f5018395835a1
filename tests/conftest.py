"""Shared fixtures: servers on loopback, port 0, always stopped and closed."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

HOST = "127.0.0.1"
TIMEOUT = 10.0  # seconds any single socket operation in a test may take


@contextmanager
def serving(server: Any, poll_interval: float = 0.05) -> Iterator[Any]:
    """Run ``server.serve_forever`` in a thread; stop, close and join it on exit."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
        server.server_close()
        assert not thread.is_alive(), "serve_forever did not return after shutdown()"


def connect(address: Any, family: int = socket.AF_INET) -> socket.socket:
    """A client socket connected to *address*, with the test timeout set."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(address)
    return sock


def recv_all(sock: socket.socket) -> bytes:
    """Read until the peer closes its side (bounded by the socket's timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


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
