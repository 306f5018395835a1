"""Shared fixtures: servers on loopback, port 0, always stopped and closed."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from minisocket import lab
from minisocket.lab import recv_all

__all__ = ["HOST", "REQUEST_STEPS", "TIMEOUT", "recv_all", "serving"]

HOST = "127.0.0.1"
TIMEOUT = 10.0  # seconds any single socket operation in a test may take

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


# Run a server in the background for the length of a with block; stop, close and join it
# after (and fail loudly if serve_forever did not return).  The notebooks use the same.
serving = lab.background


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
