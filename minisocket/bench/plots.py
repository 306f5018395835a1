"""Plots of benchmark results (matplotlib); each draws on an Axes you pass in.

Every function takes the ``results`` list of a run (see :func:`runner.run_matrix`),
so a committed reference run and a live one are drawn by the same code.  Servers keep
one colour and marker across all plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "figure",
    "plot_cdf",
    "plot_latency_vs_concurrency",
    "plot_slow_requests",
    "plot_throughput",
    "style",
]

_ORDER = [
    "blocking",
    "select",
    "threaded",
    "pool",
    "forking",
    "stdlib-blocking",
    "stdlib-threaded",
    "stdlib-forking",
    "asyncio-streams",
    "asyncio-protocol",
]
_MARKERS = "os^Dv<>ph*"


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
    names = {r["server"] for r in results}
    return sorted(names, key=lambda n: (_ORDER.index(n) if n in _ORDER else 99, n))


def plot_latency_vs_concurrency(
    ax: Any, results: Sequence[dict[str, Any]], percentile: str = "p99"
) -> None:
    """Latency percentile (ms, log) against concurrent clients (log), one line per server.

    Cells where some clients were never served are drawn hollow: their latency only
    describes the clients that got through.
    """
    for server in _servers(results):
        cells = sorted((r for r in results if r["server"] == server), key=lambda r: r["clients"])
        x = [r["clients"] for r in cells]
        y = [r[f"{percentile}_ms"] for r in cells]
        ax.plot(x, y, label=server, **style(server))
        starved = [(c["clients"], c[f"{percentile}_ms"]) for c in cells if c["unserved"]]
        if starved:
            sx, sy = zip(*starved, strict=True)
            ax.scatter(
                sx, sy, s=90, facecolors="white", edgecolors=style(server)["color"], zorder=3
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel(f"{percentile} latency (ms)")
    ax.set_title(f"{percentile} latency vs concurrency")
    ax.grid(True, which="both", alpha=0.3)


def plot_cdf(ax: Any, results: Sequence[dict[str, Any]], clients: int, key: str = "cdf_ms") -> None:
    """The latency distribution of each server at one concurrency (log x)."""
    for server in _servers(results):
        cell = next((r for r in results if r["server"] == server and r["clients"] == clients), None)
        if cell is None or not cell.get(key):
            continue
        values = cell[key]
        ax.plot(
            values,
            np.linspace(0, 1, len(values)),
            label=server,
            **{**style(server), "marker": None},
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"latency CDF, {clients} clients")
    ax.grid(True, which="both", alpha=0.3)


def plot_throughput(ax: Any, results: Sequence[dict[str, Any]]) -> None:
    """Requests per second, grouped by concurrency, one bar per server."""
    servers = _servers(results)
    levels = sorted({r["clients"] for r in results})
    width = 0.8 / len(servers)
    for i, server in enumerate(servers):
        heights = [
            next(
                (r["throughput"] for r in results if r["server"] == server and r["clients"] == n),
                0.0,
            )
            for n in levels
        ]
        positions = np.arange(len(levels)) + (i - (len(servers) - 1) / 2) * width
        ax.bar(positions, heights, width, label=server, color=style(server)["color"])
    ax.set_xticks(np.arange(len(levels)), [str(n) for n in levels])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("requests per second")
    ax.set_title("throughput")
    ax.grid(True, axis="y", alpha=0.3)


def plot_slow_requests(ax: Any, results: Sequence[dict[str, Any]]) -> None:
    """Normal requests' latency CDF while some requests burn CPU: who gets stalled."""
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
    axes[0][0].legend(fontsize=8)
    machine = run["machine"]
    fig.suptitle(
        f"{run['config']['mode']} mode, {run['config']['size']}-byte messages - "
        f"{machine['cpus']} CPUs, Python {machine['python']}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
