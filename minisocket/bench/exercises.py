"""The checks behind notebook 07's exercises (reference answers: ``solutions.py``).

Like ``minisocket.lab.exercises``: each ``check_07_*`` takes the reader's answer, prints
one line per requirement and a verdict, and never raises.  The first two check
predictions against a recorded run (the notebook passes it in), so they are the same on
every machine; the third times a function in threads, with a wide margin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from minisocket.lab import Check, check

__all__ = [
    "cpu_per_call",
    "check_07_blocking_at_8",
    "check_07_littles_law",
    "check_07_slow_request",
]


def _cell(results: Sequence[dict[str, Any]], server: str, clients: int) -> dict[str, Any]:
    return next(r for r in results if r["server"] == server and r["clients"] == clients)


def check_07_blocking_at_8(
    rate: float | None, served: int | None, results: Sequence[dict[str, Any]]
) -> None:
    """Exercise 07.1: blocking's requests per second at 8 clients, and clients served,
    predicted from its 1-client cell (*results*: the reference run's echo cells).

    The rate is accepted within the spread of every run of the blocking server at every
    concurrency -- each of them measured one client's rate on this noisy machine.
    """
    measured = _cell(results, "blocking", 8)
    runs = [
        float(run["throughput"])
        for cell in results
        if cell["server"] == "blocking"
        for run in cell.get("runs", [cell])
    ]

    def given() -> bool:
        if rate is None or served is None:
            raise NotImplementedError
        return True

    check(
        "Exercise 1",
        [
            Check("both predictions are given", given),
            Check("the number of clients served", lambda: served == measured["served"]),
            Check(
                "requests per second, within the spread of the blocking server's runs",
                lambda: min(runs) <= float(rate or 0) <= max(runs),
            ),
        ],
    )


def check_07_littles_law(
    mean_latency_ms: Callable[[dict[str, Any]], float], cells: Sequence[dict[str, Any]]
) -> None:
    """Exercise 07.2: the mean latency of each cell from its counters and throughput
    (Little's law), checked within 10 % on the cells of a recorded run with up to 64
    clients (at 256, a late-accepted client's first request waited since before the
    window opened, and the identity can be off by more than 10 %)."""
    cells = [c for c in cells if c["clients"] <= 64]

    def close(cell: dict[str, Any]) -> bool:
        return abs(mean_latency_ms(cell) / float(cell["mean_ms"]) - 1) < 0.10

    full = [c for c in cells if c["served"] == c["clients"]]
    starved = [c for c in cells if c["served"] < c["clients"]]
    slow = [c for c in cells if c["mode"] == "slow"]
    check(
        "Exercise 2",
        [
            Check("it returns a number", lambda: mean_latency_ms(cells[0]) > 0),
            Check(
                f"the {len(full)} cells where every client was served",
                lambda: all(close(c) for c in full),
            ),
            Check(
                f"the {len(starved)} cells where some were not",
                lambda: all(close(c) for c in starved),
            ),
            Check(
                f"the {len(slow)} cells with slow requests (among the {len(full)})",
                lambda: bool(slow) and all(close(c) for c in slow),
            ),
        ],
    )


def cpu_per_call(function: Callable[[float], object], ms: float, threads: int) -> list[float]:
    """Call ``function(ms)`` in *threads* threads at once; the CPU milliseconds each
    call used (``time.thread_time``).  An exception in a call is raised here."""
    barrier = threading.Barrier(threads)
    spent = [0.0] * threads
    raised: list[BaseException] = []

    def call(i: int) -> None:
        barrier.wait()
        started = time.thread_time()
        try:
            function(ms)
        except BaseException as exc:  # raised again in the caller's thread
            raised.append(exc)
        spent[i] = (time.thread_time() - started) * 1000

    workers = [threading.Thread(target=call, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if raised:
        raise raised[0]
    return spent


def check_07_slow_request(slow_request: Callable[[float], object]) -> None:
    """Exercise 07.3: a slow request that costs the same CPU however it is scheduled."""

    def alone() -> bool:
        spent = cpu_per_call(slow_request, 20, threads=1)[0]
        return 12 <= spent <= 80

    def crowded() -> bool:  # 6 threads, one interpreter lock: each waits for the others
        return min(cpu_per_call(slow_request, 20, threads=6)) >= 12

    check(
        "Exercise 3",
        [
            Check("alone, a 20 ms request uses about 20 ms of CPU", alone),
            Check("6 at once: each still uses at least 12 ms of CPU", crowded),
        ],
    )
