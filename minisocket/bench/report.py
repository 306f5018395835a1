"""The one table printer of the benchmarks (standard library only).

:func:`render` lays out any rows; :func:`cells_table` renders benchmark cells with the
columns asked for, marking what a reader must not take at face value:

``*``  after a latency: the cell has clients that were never answered, and
       percentiles describe the answered requests only (a starved server looks fast)
``client-bound``  a client process used 90 % of a core or more over the window: the
       clients, not the server, may have set the pace

*other CPU* is what the rest of the machine used in the window (other programs, interrupt
work, a hypervisor's other guests): where it is high, the cell was measured in a crowd.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["COLUMNS", "DEFAULT", "cells_table", "render", "spread", "unserved"]


def render(headers: Sequence[str], rows: Iterable[Sequence[str]], indent: str = "") -> str:
    """An aligned text table: the first column left-aligned, the others right-aligned."""
    rows = [list(r) for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]

    def line(row: Sequence[str]) -> str:
        first, *rest = row
        cells = [f"{first:<{widths[0]}}"] + [
            f"{x:>{w}}" for x, w in zip(rest, widths[1:], strict=True)
        ]
        return (indent + "  ".join(cells)).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def unserved(cell: dict[str, Any]) -> int:
    """Clients that got no answer in the window: waiting and refused."""
    return int(cell["waiting"]) + int(cell["refused"])


def spread(cell: dict[str, Any], key: str) -> tuple[float, float]:
    """The smallest and largest *key* over the cell's repetitions."""
    values = [float(r[key]) for r in cell.get("runs", [cell])]
    return min(values), max(values)


def _number(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _latency(key: str) -> Callable[[dict[str, Any]], str]:
    def text(cell: dict[str, Any]) -> str:
        value = float(cell[key])
        return _number(value, 3 if value < 10 else 1) + ("*" if unserved(cell) else " ")

    return text


def _rate_range(cell: dict[str, Any]) -> str:
    low, high = spread(cell, "throughput")
    return f"{low:,.0f}-{high:,.0f}" if len(cell.get("runs", ())) > 1 else ""


COLUMNS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "server": ("server", lambda c: str(c["server"])),
    "mode": ("mode", lambda c: str(c["mode"])),
    "clients": ("clients", lambda c: str(c["clients"])),
    "req/s": ("req/s", lambda c: _number(float(c["throughput"]))),
    "range": ("req/s range", _rate_range),
    "p50": ("p50 ms", _latency("p50_ms")),
    "p99": ("p99 ms", _latency("p99_ms")),
    "max": ("max ms", _latency("max_ms")),
    "normal p50": ("normal p50 ms", _latency("normal_p50_ms")),
    "normal p99": ("normal p99 ms", _latency("normal_p99_ms")),
    "slow p50": ("slow p50 ms", _latency("slow_p50_ms")),
    "served": ("served", lambda c: str(c["served"])),
    "waiting": ("waiting", lambda c: str(c["waiting"])),
    "refused": ("refused", lambda c: str(c["refused"])),
    "errors": ("errors", lambda c: str(c["errors"])),
    "late": ("late", lambda c: str(c["late"])),
    "server CPU": ("server CPU", lambda c: f"{c['server_cpu']:.2f}"),
    "us/req": ("CPU us/req", lambda c: _number(float(c["cpu_us_per_request"]), 1)),
    "work": ("work CPU", lambda c: f"{c['work_cores']:.2f}"),
    "client CPU": ("client CPU", lambda c: f"{c['client_cpu']:.2f}"),
    "other CPU": ("other CPU", lambda c: _number(float(c["other_cpu"]), 2)),
    "note": ("", lambda c: "client-bound" if c["client_bound"] else ""),
}
DEFAULT = (
    "server", "clients", "req/s", "range", "p50", "p99", "served", "waiting", "refused",
    "server CPU", "us/req", "client CPU", "other CPU", "note",
)  # fmt: skip


def cells_table(
    cells: Sequence[dict[str, Any]], columns: Sequence[str] = DEFAULT, indent: str = ""
) -> str:
    """Benchmark cells as a table of *columns* (names from ``COLUMNS``), with a footnote
    for every mark that appears.  CPU columns are shares of one core over the window."""
    if not any(len(c.get("runs", ())) > 1 for c in cells):
        columns = [c for c in columns if c != "range"]
    if not any(c["client_bound"] for c in cells):
        columns = [c for c in columns if c != "note"]
    out = render(
        [COLUMNS[c][0] for c in columns],
        [[COLUMNS[name][1](cell) for name in columns] for cell in cells],
        indent,
    )
    notes = []
    if any(unserved(c) for c in cells) and any(c in columns for c in ("p50", "p99", "max")):
        notes.append("* percentiles of the answered requests only: some clients got no answer")
    if any(c["client_bound"] for c in cells):
        notes.append("client-bound: a client process used >= 90 % of a core; the clients, not")
        notes.append("  the server, may have set the pace")
    return "\n".join([out, *(indent + n for n in notes)])
