"""minisocket against its references, as ratios measured in one run.

    python -m minisocket.bench.ratios [--duration 1.5] [--trials 15] [--json FILE]

Prints the machine, a table of every cell, and one line per comparison with its
target.  Ratios are >1 when minisocket is better (more requests per second, or a
shorter shutdown).  Nothing here asserts: the machine is shared and noisy, so the
numbers are reported, not tested.

Every cell runs ``--repeat`` times, the repetitions interleaved, so run *i* of two
servers ran minutes apart at most and met the same machine.  A comparison is therefore
made run by run: its line gives the median of the per-run ratios, their range, and a
verdict -- "meets" when every run meets the target, "MISSES" when none does, and
"k of n" otherwise (the difference is within the noise).
"""

from __future__ import annotations

import argparse
import json
import random
import socketserver
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import minisocket

from .runner import LoadConfig, machine, run_cell

__all__ = ["Comparison", "compare", "main", "shutdown_latency"]

ECHO_SERVERS = [
    "select",
    "select-busy",
    "threaded",
    "stdlib-threaded",
    "asyncio-streams",
    "asyncio-protocol",
]
ECHO_CLIENTS = [1, 8, 64, 256]
CONNECT_SERVERS = ["pool", "threaded", "stdlib-threaded"]
CONNECT_CLIENTS = 8


def shutdown_latency(module: Any, trials: int, seed: int = 0) -> list[float]:
    """Seconds each ``shutdown()`` took, with ``serve_forever(poll_interval=0.5)``.

    Before each shutdown the loop runs for a random 0-0.5 s, so a polling loop is
    caught at a random point of its interval, as a real shutdown would be.
    """
    rng = random.Random(seed)
    times = []
    for _ in range(trials):
        server = module.TCPServer(("127.0.0.1", 0), module.BaseRequestHandler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5})
        thread.start()
        time.sleep(rng.uniform(0.05, 0.5))
        started = time.perf_counter()
        server.shutdown()
        times.append(time.perf_counter() - started)
        thread.join()
        server.server_close()
    return times


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: float(r["throughput"]))
    return ordered[len(ordered) // 2]


@dataclass(frozen=True)
class Comparison:
    """One comparison against its target, judged run by run."""

    label: str
    ratios: list[float]  # one per interleaved repetition
    target: float

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def verdict(self) -> str:
        met = sum(r >= self.target for r in self.ratios)
        if met == len(self.ratios):
            return "meets"
        if met == 0:
            return "MISSES"
        return f"{met} of {len(self.ratios)} runs meet: within the noise"

    def line(self) -> str:
        spread = f"[{min(self.ratios):.2f}-{max(self.ratios):.2f}]"
        return (
            f"  {self.label:<54}{self.median:8.2f}x {spread:>13}  "
            f"target >= {self.target:g}x: {self.verdict}"
        )


def compare(label: str, ours: list[float], theirs: list[float], target: float) -> Comparison:
    """Compare paired measurements (higher is better for *ours*) run by run."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError("compare() needs the same, non-zero number of runs on both sides")
    return Comparison(label, [a / b for a, b in zip(ours, theirs, strict=True)], target)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minisocket.bench.ratios")
    parser.add_argument("--duration", type=float, default=1.5, help="seconds per cell")
    parser.add_argument("--trials", type=int, default=15, help="shutdown trials per library")
    parser.add_argument("--repeat", type=int, default=5, help="runs per cell (median)")
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args(argv)
    if not args.duration > 0 or args.trials < 1 or args.repeat < 1:
        parser.error("--duration must be > 0, --trials and --repeat at least 1")

    info = machine()
    print(
        f"machine: {info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}, {info['os']}"
    )

    mini_shutdown = shutdown_latency(minisocket, args.trials)
    std_shutdown = shutdown_latency(socketserver, args.trials)
    mini_median, std_median = statistics.median(mini_shutdown), statistics.median(std_shutdown)
    print(
        f"\nshutdown() median over {args.trials} trials, poll_interval=0.5: "
        f"minisocket {mini_median * 1e3:.3f} ms, socketserver {std_median * 1e3:.1f} ms"
    )

    echo = LoadConfig(mode="echo", duration=args.duration)
    connect = LoadConfig(mode="connect", duration=args.duration)
    plan = [(name, clients, echo) for clients in ECHO_CLIENTS for name in ECHO_SERVERS]
    plan += [(name, -CONNECT_CLIENTS, connect) for name in CONNECT_SERVERS]
    # Every cell runs --repeat times, the repetitions interleaved (all cells once, then
    # all again), and the run with the median throughput represents the cell: slow
    # drifts of a shared machine then hit every server alike.
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {(n, c): [] for n, c, _ in plan}
    for _ in range(args.repeat):
        for name, clients, config in plan:
            runs[name, clients].append(run_cell(name, abs(clients), config))
    cells = {key: _median_run(values) for key, values in runs.items()}

    print(
        f"\necho, 64-byte messages, persistent connections, {args.duration:g} s per cell, "
        f"median of {args.repeat}"
    )
    print(
        f"  {'server':<18}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'client CPU':>12}{'server CPU':>12}{'errors':>8}"
    )
    for (name, clients), cell in cells.items():
        if clients < 0:
            continue
        print(
            f"  {name:<18}{clients:>8}{cell['throughput']:>10.0f}{cell['p50_ms']:>9.3f}"
            f"{cell['p99_ms']:>9.3f}{cell['client_cpu']:>12.2f}{cell['server_cpu']:>12.2f}"
            f"{cell['errors'] + cell['timeouts']:>8}"
            + ("  (client saturated)" if cell["client_saturated"] else "")
        )
    print(f"\nconnection per request, {CONNECT_CLIENTS} clients, median of {args.repeat}")
    for name in CONNECT_SERVERS:
        cell = cells[name, -CONNECT_CLIENTS]
        print(
            f"  {name:<18}{cell['throughput']:>10.0f} req/s  p50 {cell['p50_ms']:.3f} ms  "
            f"p99 {cell['p99_ms']:.3f} ms  errors {cell['errors'] + cell['timeouts']}"
        )

    def rates(name: str, clients: int) -> list[float]:
        return [float(run["throughput"]) for run in runs[name, clients]]

    comparisons = [
        Comparison("shutdown: socketserver / minisocket", [std_median / mini_median], 200),
        compare(
            "SelectorTCPServer / stdlib ThreadingTCPServer @256",
            rates("select", 256),
            rates("stdlib-threaded", 256),
            2.5,
        ),
    ]
    for ours, label in (("select", "SelectorTCPServer"), ("select-busy", "  busy_poll 50 us")):
        for clients in ECHO_CLIENTS:
            for ref in ("asyncio-streams", "asyncio-protocol"):
                comparisons.append(
                    compare(
                        f"{label} / {ref} @{clients}",
                        rates(ours, clients),
                        rates(ref, clients),
                        1.0,
                    )
                )
    for clients in ECHO_CLIENTS:
        comparisons.append(
            compare(
                f"minisocket / stdlib ThreadingTCPServer @{clients}",
                rates("threaded", clients),
                rates("stdlib-threaded", clients),
                1.0,
            )
        )
    comparisons.append(
        compare(
            f"ThreadPoolTCPServer / stdlib ThreadingTCPServer, connect x{CONNECT_CLIENTS}",
            rates("pool", -CONNECT_CLIENTS),
            rates("stdlib-threaded", -CONNECT_CLIENTS),
            2.0,
        )
    )
    print(
        f"\nratios (higher is better for minisocket): median of {args.repeat} paired runs "
        "[range], shutdown: of the medians"
    )
    for comparison in comparisons:
        print(comparison.line())
    saturated = [f"{k[0]}@{abs(k[1])}" for k, v in cells.items() if v["client_saturated"]]
    print("\nclient saturated in: " + (", ".join(saturated) if saturated else "no cell"))

    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "shutdown_s": {"minisocket": mini_shutdown, "socketserver": std_shutdown},
                    "cells": [
                        {**v, "mode": "echo" if key[1] > 0 else "connect", "cdf_ms": None}
                        for key, v in cells.items()
                    ],
                    "comparisons": [vars(c) for c in comparisons],
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
