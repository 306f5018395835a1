"""Reference answers to notebook 07's exercises (checked by ``exercises.py``).

Try the exercises before reading on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

__all__ = ["blocking_at_8", "mean_latency_ms", "slow_request"]


def blocking_at_8(results: Sequence[dict[str, Any]]) -> tuple[float, int]:
    """Exercise 1.  The blocking server serves one connection until it closes: the
    first client to be accepted.  The other seven wait in the accept queue, so the
    server does exactly what it did for one client: the same rate, one client served."""
    one = next(r for r in results if r["server"] == "blocking" and r["clients"] == 1)
    return one["throughput"], 1


def mean_latency_ms(cell: dict[str, Any]) -> float:
    """Exercise 2.  Little's law, L = X W, for the clients *in the loop*: each served
    client always has one request in flight, so W = served / X.  Clients that were never
    answered have no completed requests to average, so they do not count in L."""
    return float(cell["served"] / cell["throughput"] * 1000)


def slow_request(ms: float) -> None:
    """Exercise 3.  Spin until this thread has used *ms* of CPU.  ``time.thread_time``
    does not advance while the thread waits for the interpreter lock or for a core, so
    a crowded request takes longer but does the same work."""
    deadline = time.thread_time() + ms / 1000
    while time.thread_time() < deadline:
        pass
