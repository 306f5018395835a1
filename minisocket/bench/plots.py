"""Plots of benchmark results (matplotlib); each draws on an Axes you pass in.

Every function takes the ``results`` list of a run (see :func:`runner.run_matrix`),
so a committed reference run and a live one are drawn by the same code.  Servers keep
one colour and marker across all plots, every plot has a legend, concurrency axes are
ticked at the levels measured, and:

- a cell where some clients got no answer is drawn *hollow* (or hatched), never as a
  normal point: its latency describes the answered requests only;
- when a cell ran several times (interleaved), a bar spans the smallest to the largest
  of its runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .kinds import KINDS
from .report import spread, unserved

__all__ = [
    "figure",
    "plot_cdf",
    "plot_clients",
    "plot_latency_vs_concurrency",
    "plot_slow_requests",
    "plot_throughput",
    "style",
]

_ORDER = [name for name in KINDS if not name.endswith("-busy")]
_MARKERS = "os^Dv<>ph*"
UNSERVED_NOTE = "hollow: some clients got no answer"


def style(server: str) -> dict[str, Any]:
    """Colour, marker and line style for one server, the same in every plot.

    A tuned variant ("select-busy") wears its server's colour with a dotted line.
    """
    if server.endswith("-busy"):
        return {**style(server.removesuffix("-busy")), "marker": "X", "linestyle": ":"}
    index = _ORDER.index(server) if server in _ORDER else len(_ORDER)
    return {
        "color": f"C{index % 10}",
        "marker": _MARKERS[index % len(_MARKERS)],
        "linestyle": "--" if server.startswith(("stdlib", "asyncio")) else "-",
    }


def _servers(results: Sequence[dict[str, Any]]) -> list[str]:
    order = list(KINDS)
    names = {r["server"] for r in results}
    return sorted(names, key=lambda n: (order.index(n) if n in order else 99, n))


def _cells(results: Sequence[dict[str, Any]], server: str) -> list[dict[str, Any]]:
    return sorted((r for r in results if r["server"] == server), key=lambda r: r["clients"])


def _concurrency_axis(ax: Any, levels: Sequence[int]) -> None:
    """A log-2 axis ticked at the measured levels, labelled as plain numbers."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(levels), [str(n) for n in levels])
    ax.minorticks_off()
    ax.set_xlabel("concurrent clients")


def _plain_log(axis: Any) -> None:
    """Label a log axis 0.1, 1, 10 (and its minor ticks 2, 5), not 10^-1, 10^0."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(LogLocator(subs=(2, 5)))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _legend(ax: Any, note: Any = None, **kwargs: Any) -> None:
    """The legend, with the entry that explains hollow or hatched cells (if any) last."""
    handles, labels = ax.get_legend_handles_labels()
    if note is not None:
        handles.append(note)
        labels.append(note.get_label())
    ax.legend(handles, labels, fontsize=7, **kwargs)


def plot_latency_vs_concurrency(
    ax: Any, results: Sequence[dict[str, Any]], percentile: str = "p99"
) -> None:
    """A latency percentile (ms, log) against concurrent clients, one line per server.

    The line joins the cells where every client was answered; a cell where some were
    not is a hollow marker off the line.  Bars: the smallest to the largest run.
    """
    key = f"{percentile}_ms"
    starved = False
    for server in _servers(results):
        look = style(server)
        cells = _cells(results, server)
        full = [c for c in cells if not unserved(c)]
        ax.errorbar(
            [c["clients"] for c in full],
            [c[key] for c in full],
            yerr=_bars(full, key),
            label=server,
            capsize=2,
            **look,
        )
        hollow = [c for c in cells if unserved(c)]
        if hollow:
            starved = True
            ax.scatter(
                [c["clients"] for c in hollow],
                [c[key] for c in hollow],
                s=60,
                marker=look["marker"],
                facecolors="white",
                edgecolors=look["color"],
                zorder=3,
            )
    _concurrency_axis(ax, sorted({r["clients"] for r in results}))
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    ax.set_ylabel(f"{percentile} latency of answered requests (ms)")
    ax.set_title(f"{percentile} latency vs concurrency")
    ax.grid(True, which="major", alpha=0.3)
    note = None
    if starved:
        from matplotlib.lines import Line2D

        note = Line2D(
            [], [], marker="o", linestyle="", markerfacecolor="white",
            markeredgecolor="0.3", label=UNSERVED_NOTE,
        )  # fmt: skip
    _legend(ax, note)


def _bars(cells: Sequence[dict[str, Any]], key: str) -> Any:
    """Error bars from each cell's value down to its smallest run and up to its largest."""
    if not cells or all(len(c.get("runs", ())) < 2 for c in cells):
        return None
    low, high = zip(*(spread(c, key) for c in cells), strict=True)
    values = np.array([c[key] for c in cells], dtype=float)
    return np.clip([values - np.array(low), np.array(high) - values], 0, None)


def plot_cdf(ax: Any, results: Sequence[dict[str, Any]], clients: int, key: str = "cdf_ms") -> None:
    """The latency distribution of the answered requests of each server at one
    concurrency (log x); a server that left clients unanswered is drawn thin, its
    label saying how many it served."""
    for server in _servers(results):
        cell = next((r for r in results if r["server"] == server and r["clients"] == clients), None)
        if cell is None or not cell.get(key):
            continue
        values = cell[key]
        label = server
        if unserved(cell):
            label += f" ({cell['served']} of {clients} served)"
        ax.plot(
            values,
            np.linspace(0, 1, len(values)),
            label=label,
            linewidth=0.8 if unserved(cell) else 1.6,
            **{**style(server), "marker": None},
        )
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of answered requests")
    ax.set_title(f"latency CDF of answered requests, {clients} clients")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax)


def plot_throughput(ax: Any, results: Sequence[dict[str, Any]]) -> None:
    """Requests per second, grouped by concurrency, one bar per server; hatched where
    some clients got no answer; bars span the smallest to the largest run."""
    servers = _servers(results)
    levels = sorted({r["clients"] for r in results})
    width = 0.8 / len(servers)
    hatched = False
    for i, server in enumerate(servers):
        cells = [
            next((r for r in results if r["server"] == server and r["clients"] == n), None)
            for n in levels
        ]
        positions = np.arange(len(levels)) + (i - (len(servers) - 1) / 2) * width
        present = [(p, c) for p, c in zip(positions, cells, strict=True) if c is not None]
        ax.bar(
            [p for p, _ in present],
            [c["throughput"] for _, c in present],
            width,
            yerr=_bars([c for _, c in present], "throughput"),
            capsize=1.5,
            error_kw={"ecolor": "0.25", "elinewidth": 0.8},
            label=server,
            color=style(server)["color"],
            alpha=0.55 if server.endswith("-busy") else 1.0,  # a tuned variant: paler
            hatch=["///" if unserved(c) else "" for _, c in present],
            edgecolor="white",
        )
        hatched = hatched or any(unserved(c) for _, c in present)
    note = None
    if hatched:
        from matplotlib.patches import Patch

        label = UNSERVED_NOTE.replace("hollow", "hatched")
        note = Patch(facecolor="0.7", hatch="///", edgecolor="white", label=label)
    ax.set_xticks(np.arange(len(levels)), [str(n) for n in levels])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("requests per second")
    ax.set_title("throughput")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax, note, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))


def plot_clients(ax: Any, results: Sequence[dict[str, Any]], clients: int) -> None:
    """Served, waiting and refused clients of each server at one concurrency."""
    cells = [
        c
        for server in _servers(results)
        for c in results
        if c["server"] == server and c["clients"] == clients
    ]
    y = np.arange(len(cells))
    left = np.zeros(len(cells))
    for state, color in (("served", "C2"), ("waiting", "C1"), ("refused", "C3")):
        counts = np.array([c[state] for c in cells], dtype=float)
        ax.barh(y, counts, left=left, color=color, label=state)
        left += counts
    ax.set_yticks(y, [c["server"] for c in cells])
    ax.invert_yaxis()
    ax.set_xlabel("clients")
    ax.set_title(f"{clients} clients: who got an answer")
    _legend(ax, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))


def plot_slow_requests(ax: Any, results: Sequence[dict[str, Any]]) -> None:
    """Normal requests' latency CDF while some requests do slow work: who gets stalled."""
    clients = max(r["clients"] for r in results)
    plot_cdf(ax, results, clients, key="normal_cdf_ms")
    ax.set_title(f"normal requests among slow ones, {clients} clients")


def figure(run: dict[str, Any]) -> Any:
    """A 2x2 overview of one run, for ``--plot``: p50 and p99 vs concurrency, the CDF at
    the highest concurrency, and throughput (or normal-request latency in slow mode)."""
    import matplotlib.pyplot as plt

    results = run["results"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    plot_latency_vs_concurrency(axes[0][0], results, "p50")
    plot_latency_vs_concurrency(axes[0][1], results, "p99")
    plot_cdf(axes[1][0], results, max(r["clients"] for r in results))
    if run["config"]["mode"] == "slow":
        plot_slow_requests(axes[1][1], results)
    else:
        plot_throughput(axes[1][1], results)
    machine = run["machine"]
    fig.suptitle(
        f"{run['config']['mode']} mode, {run['config']['size']}-byte messages - "
        f"{machine['cpus']} CPUs, Python {machine['python']}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
