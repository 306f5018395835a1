"""``python -m minisocket.bench``: run a matrix of servers x concurrency, print, save, plot.

    python -m minisocket.bench --servers blocking,select,threaded --clients 1,8,64 \\
        --duration 2 --out results.json --plot latency.png
    python -m minisocket.bench --quick
    python -m minisocket.bench --mode slow --servers select,threaded,forking --clients 16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .servers import SERVERS

__all__ = ["main", "parse_args"]

DEFAULT_SERVERS = "blocking,select,threaded,pool,stdlib-threaded,asyncio-protocol"
DEFAULT_CLIENTS = "1,8,64"
# --quick: short cells, two concurrency levels, little waiting for starved clients
QUICK_CLIENTS, QUICK_DURATION, QUICK_WARMUP, QUICK_GRACE = "1,8", 0.3, 0.1, 0.5


def _servers(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown server {', '.join(unknown) or '(none given)'}; choose from: "
            + ", ".join(sorted(SERVERS))
        )
    return names


def _clients(text: str) -> list[int]:
    try:
        levels = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    if not levels or any(not 1 <= n <= 2000 for n in levels):
        raise argparse.ArgumentTypeError("client counts must be between 1 and 2000")
    return levels


def _bounded(kind: type, low: float, high: float) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low:g}..{high:g}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m minisocket.bench",
        description="Drive servers with closed-loop clients on 127.0.0.1 and compare latency.",
    )
    parser.add_argument(
        "--servers",
        type=_servers,
        default=_servers(DEFAULT_SERVERS),
        help=f"comma-separated, from: {', '.join(sorted(SERVERS))}",
    )
    parser.add_argument(
        "--clients",
        type=_clients,
        default=None,
        help="comma-separated concurrency levels (default 1,8,64)",
    )
    parser.add_argument("--mode", choices=("echo", "connect", "slow"), default="echo")
    parser.add_argument(
        "--duration",
        type=_bounded(float, 0.05, 600),
        default=None,
        help="seconds per cell (default 2)",
    )
    parser.add_argument("--size", type=_bounded(int, 1, 65536), default=64, help="message bytes")
    parser.add_argument(
        "--slow-fraction",
        type=_bounded(float, 0, 1),
        default=0.05,
        help="share of slow requests in --mode slow",
    )
    parser.add_argument(
        "--work-ms", type=_bounded(float, 0, 10_000), default=20.0, help="CPU per slow request"
    )
    parser.add_argument("--client-processes", type=_bounded(int, 1, 64), default=2)
    parser.add_argument(
        "--cpu", type=int, help="run the server and the clients on this one CPU (Linux)"
    )
    parser.add_argument("--out", help="write the results as JSON")
    parser.add_argument("--plot", help="write an overview figure (PNG, SVG, PDF)")
    parser.add_argument("--quick", action="store_true", help="0.3 s cells, clients 1,8")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        if args.cpu not in allowed:
            parser.error(f"--cpu {args.cpu}: not a CPU this process may run on")
    if args.clients is None:
        args.clients = _clients(QUICK_CLIENTS if args.quick else DEFAULT_CLIENTS)
    if args.duration is None:
        args.duration = QUICK_DURATION if args.quick else 2.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # numpy, matplotlib and tqdm come with the `bench` extra, not with minisocket itself:
    # --help needs none of them, and a run without them says what to install.
    try:
        from tqdm import tqdm

        from .runner import LoadConfig, run_matrix

        if args.plot:
            import matplotlib
    except ModuleNotFoundError as missing:
        raise SystemExit(
            f"python -m minisocket.bench needs {missing.name}: "
            "pip install 'minisocket[bench]' (or '.[bench]' in a checkout)"
        ) from None
    slow = args.mode == "slow"
    config = LoadConfig(
        mode=args.mode,
        size=args.size,
        duration=args.duration,
        warmup=QUICK_WARMUP if args.quick else 0.2,
        grace=QUICK_GRACE if args.quick else 2.0,
        slow_fraction=args.slow_fraction if slow else 0.0,
        work_ms=args.work_ms if slow else 0.0,
        client_processes=args.client_processes,
        cpu=args.cpu,
    )
    cells = len(args.servers) * len(args.clients)
    with tqdm(total=cells, unit="cell", disable=args.no_progress, file=sys.stderr) as bar:

        def progress(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update(1)

        run = run_matrix(args.servers, args.clients, config, progress=progress)
    print(_report(run, args))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(run, f, indent=1)
    if args.plot:
        matplotlib.use("Agg")
        from .plots import figure

        figure(run).savefig(args.plot, dpi=110)
    return 0


def _report(run: dict[str, Any], args: argparse.Namespace) -> str:
    machine = run["machine"]
    lines = [
        f"{machine['cpus']} CPUs ({machine['cpu_model']}), Python {machine['python']}, "
        f"{machine['os']}; {args.mode} mode, {args.size}-byte messages, "
        f"{args.duration:g} s per cell"
        + ("" if args.cpu is None else f"; server and clients on CPU {args.cpu} only")
    ]
    columns = [("clients", 8), ("req/s", 10), ("p50 ms", 9), ("p90 ms", 9), ("p99 ms", 9)]
    columns += [("max ms", 9), ("unserved", 10), ("errors", 8), ("client CPU", 12)]
    lines.append(f"{'server':<18}" + "".join(f"{name:>{width}}" for name, width in columns))
    for cell in run["results"]:
        values = [
            f"{cell['server']:<18}{cell['clients']:>8}{cell['throughput']:>10.0f}",
            *(f"{cell[k]:>9.3f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")),
            f"{cell['unserved']:>10}{cell['errors'] + cell['timeouts']:>8}",
            f"{cell['client_cpu']:>12.2f}",
            "  client saturated" if cell["client_saturated"] else "",
        ]
        lines.append("".join(values))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
