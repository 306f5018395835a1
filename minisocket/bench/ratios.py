"""minisocket against its references, as ratios measured in one run.

    python -m minisocket.bench.ratios [--duration 1.5] [--trials 15] [--json FILE]

Prints the machine, a table of every cell, and one line per comparison with its
target.  Ratios are >1 when minisocket is better (more requests per second, or a
shorter shutdown).  Nothing here asserts: the machine is shared and noisy, so the
numbers are reported, not tested.
"""

from __future__ import annotations

import argparse
import json
import random
import socketserver
import statistics
import threading
import time
from typing import Any

import minisocket

from .runner import LoadConfig, machine, run_cell

__all__ = ["main", "shutdown_latency"]

ECHO_SERVERS = ["select", "threaded", "stdlib-threaded", "asyncio-streams", "asyncio-protocol"]
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


def _ratio_line(label: str, ratio: float, target: float) -> str:
    verdict = "meets" if ratio >= target else "MISSES"
    return f"  {label:<58} {ratio:8.2f}x   target >= {target:g}x: {verdict}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minisocket.bench.ratios")
    parser.add_argument("--duration", type=float, default=1.5, help="seconds per cell")
    parser.add_argument("--trials", type=int, default=15, help="shutdown trials per library")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (median)")
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args(argv)

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

    def rate(name: str, clients: int) -> float:
        return float(cells[name, clients]["throughput"])

    print("\nratios (higher is better for minisocket)")
    print(_ratio_line("shutdown: socketserver / minisocket", std_median / mini_median, 200))
    print(
        _ratio_line(
            "SelectorTCPServer / stdlib ThreadingTCPServer @256",
            rate("select", 256) / rate("stdlib-threaded", 256),
            2.5,
        )
    )
    for clients in ECHO_CLIENTS:
        for ref in ("asyncio-streams", "asyncio-protocol"):
            print(
                _ratio_line(
                    f"SelectorTCPServer / {ref} @{clients}",
                    rate("select", clients) / rate(ref, clients),
                    1.0,
                )
            )
    for clients in ECHO_CLIENTS:
        print(
            _ratio_line(
                f"minisocket / stdlib ThreadingTCPServer @{clients}",
                rate("threaded", clients) / rate("stdlib-threaded", clients),
                1.0,
            )
        )
    print(
        _ratio_line(
            f"ThreadPoolTCPServer / stdlib ThreadingTCPServer, connect x{CONNECT_CLIENTS}",
            rate("pool", -CONNECT_CLIENTS) / rate("stdlib-threaded", -CONNECT_CLIENTS),
            2.0,
        )
    )
    saturated = [f"{k[0]}@{abs(k[1])}" for k, v in cells.items() if v["client_saturated"]]
    print("\nclient saturated in: " + (", ".join(saturated) if saturated else "no cell"))

    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "shutdown_s": {"minisocket": mini_shutdown, "socketserver": std_shutdown},
                    "cells": [{**v, "cdf_ms": None} for v in cells.values()],
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
