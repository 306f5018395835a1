"""Soak test: many connections for a long time -- no errors, memory flat.

    python -m minisocket.bench.soak                      # select x 1000 and threaded x 200, 60 s
    python -m minisocket.bench.soak --duration 5 --select 200 --threaded 50   # the CI variant

Every connection runs the closed-loop echo of :mod:`minisocket.bench.load` for the
whole duration.  The server's resident memory is sampled twice a second; "flat" means
it grew by at most 10 % (or 2 MiB) over the second half of the run.
"""

from __future__ import annotations

import argparse
from typing import Any

from .runner import LoadConfig, machine, run_cell

__all__ = ["main", "soak"]


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
    cell["clean"] = cell["errors"] == cell["timeouts"] == cell["unserved"] == 0
    return cell


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minisocket.bench.soak")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per server")
    parser.add_argument("--select", type=int, default=1000, help="connections to SelectorTCPServer")
    parser.add_argument(
        "--threaded", type=int, default=200, help="connections to ThreadingTCPServer"
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.select < 1 or args.threaded < 1:
        parser.error("--duration, --select and --threaded must be positive")
    info = machine()
    print(f"machine: {info['cpus']} CPUs, Python {info['python']}, {info['os']}")
    ok = True
    for server, connections in (("select", args.select), ("threaded", args.threaded)):
        cell = soak(server, connections, args.duration)
        rss = cell["server_rss_kib"]
        print(
            f"{server:>9} x {connections:<5} {args.duration:g} s: {cell['requests']:,} requests "
            f"({cell['throughput']:,.0f}/s), errors {cell['errors']}, timeouts "
            f"{cell['timeouts']}, unserved {cell['unserved']}, p99 {cell['p99_ms']:.2f} ms; "
            f"server RSS {min(rss) / 1024:.1f}-{max(rss) / 1024:.1f} MiB, over the second half "
            f"{cell['rss_growth_kib'] / 1024:+.1f} MiB ({'flat' if cell['flat'] else 'GROWING'})"
        )
        ok = ok and cell["clean"] and cell["flat"]
    print("soak:", "passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
