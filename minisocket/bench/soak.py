"""Soak test: many connections for a long time -- no errors, memory flat.

    python -m minisocket.bench soak                      # select x 1000, threaded x 200, 60 s
    python -m minisocket.bench soak --duration 5 --select 200 --threaded 50

Every connection runs the closed-loop echo of :mod:`minisocket.bench.load` for the
whole duration.  The server's resident memory is sampled twice a second; "flat" means
it grew by at most 10 % (or 2 MiB) over the second half of the run.
"""

from __future__ import annotations

from typing import Any

from .report import cells_table
from .runner import LoadConfig, run_cell

__all__ = ["soak"]


def soak(server: str, connections: int, duration: float) -> dict[str, Any]:
    """Run one soak; return the cell with an ``rss_growth_kib`` and a ``flat`` verdict."""
    cell = run_cell(server, connections, LoadConfig(duration=duration, warmup=1.0))
    samples = cell["server_rss_kib"]
    # The first seconds touch thread stacks and fill malloc's arenas (socketserver shows
    # the same curve); a leak keeps growing.  So compare the middle with the end.
    middle, last = (samples[len(samples) // 2], samples[-1]) if samples else (0, 0)
    growth = last - middle
    cell["rss_growth_kib"] = growth
    cell["flat"] = growth <= max(2048, middle // 10)
    cell["clean"] = cell["errors"] == cell["timeouts"] == cell["waiting"] == 0
    cell["clean"] = cell["clean"] and cell["refused"] == 0
    return cell


def main(plan: list[tuple[str, int]], duration: float) -> int:
    """Soak each (server, connections) of *plan*; print a table; 0 if all passed."""
    cells = [soak(server, connections, duration) for server, connections in plan]
    print(
        cells_table(
            cells,
            (
                "server",
                "clients",
                "req/s",
                "p99",
                "served",
                "waiting",
                "refused",
                "errors",
                "server CPU",
                "client CPU",
                "note",
            ),
        )
    )
    ok = True
    for cell in cells:
        rss = cell["server_rss_kib"]
        print(
            f"{cell['server']} x {cell['clients']}: server RSS {min(rss) / 1024:.1f}-"
            f"{max(rss) / 1024:.1f} MiB, over the second half "
            f"{cell['rss_growth_kib'] / 1024:+.1f} MiB ({'flat' if cell['flat'] else 'GROWING'})"
            f"{'' if cell['clean'] else '; errors or unanswered clients'}"
        )
        ok = ok and cell["clean"] and cell["flat"]
    print("soak:", "passed" if ok else "FAILED")
    return 0 if ok else 1
