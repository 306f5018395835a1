"""``python -m minisocket.bench``: one command line, four sub-commands.

    python -m minisocket.bench run --servers blocking,select,threaded --clients 1,8,64
    python -m minisocket.bench run --mode slow --servers slow --clients 16 --repeat 3
    python -m minisocket.bench ratios --json ratios.json
    python -m minisocket.bench soak --duration 5 --select 200 --threaded 50
    python -m minisocket.bench record notebooks/data

Without a sub-command, ``run`` is meant.  This module imports the standard library and
:mod:`minisocket.bench.kinds` only: ``--help`` works without the ``bench`` extra, and a
run without numpy says what to install.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from .kinds import KINDS, SETS, names

__all__ = ["main", "parse_args"]

COMMANDS = ("run", "ratios", "soak", "record")
DEFAULT_CLIENTS = "1,8,64"
# --quick: short cells, two concurrency levels, little waiting for starved clients
QUICK_CLIENTS, QUICK_DURATION, QUICK_WARMUP, QUICK_GRACE = "1,8", 0.3, 0.1, 0.5
# the table's columns (see minisocket.bench.report.COLUMNS), without and with slow requests
RUN_COLUMNS = (
    ("server", "clients", "req/s", "range", "p50", "p99", "served", "waiting", "refused",
     "server CPU", "us/req", "client CPU", "other CPU", "note"),
    ("server", "clients", "req/s", "normal p50", "normal p99", "slow p50", "served",
     "waiting", "refused", "server CPU", "work", "client CPU", "other CPU", "note"),
)  # fmt: skip
EPILOG = """\
examples:
  python -m minisocket.bench run --servers blocking,select,threaded --clients 1,8,64 \\
      --out results.json --plot latency.png
  python -m minisocket.bench run --mode slow --servers slow --clients 16 --repeat 3
  python -m minisocket.bench ratios           minisocket against socketserver and asyncio
  python -m minisocket.bench soak             1,000 connections (select), 200 (threaded), 60 s
  python -m minisocket.bench record notebooks/data    re-record notebook 07's data

`python -m minisocket.bench COMMAND --help` tells more; without a command, `run` is meant.
"""


def _servers(text: str) -> list[str]:
    try:
        return names(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"{error}; choose from: {', '.join(KINDS)}, or a set: {', '.join(SETS)}"
        ) from None


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


def _run_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="a matrix of servers x concurrency: a table, a JSON file, a figure",
        description="Drive servers with closed-loop clients on 127.0.0.1 and compare.",
    )
    run.add_argument(
        "--servers",
        type=_servers,
        default=list(SETS["default"]),
        help=f"comma-separated kinds ({', '.join(KINDS)}) or sets ({', '.join(SETS)}); "
        f"default: {','.join(SETS['default'])}",
    )
    run.add_argument(
        "--clients", type=_clients, help=f"comma-separated levels (default {DEFAULT_CLIENTS})"
    )
    run.add_argument("--mode", choices=("echo", "connect", "slow"), default="echo")
    run.add_argument(
        "--duration", type=_bounded(float, 0.05, 600), help="seconds per cell (default 2)"
    )
    run.add_argument(
        "--repeat", type=_bounded(int, 1, 100), default=1, help="runs per cell, interleaved"
    )
    run.add_argument("--size", type=_bounded(int, 1, 65536), default=64, help="message bytes")
    run.add_argument(
        "--slow-fraction",
        type=_bounded(float, 0, 1),
        default=0.05,
        help="share of slow requests in --mode slow",
    )
    run.add_argument(
        "--work-ms",
        type=_bounded(float, 0, 10_000),
        default=20.0,
        help="work per slow request: the same loop for every server, this long on an idle core",
    )
    run.add_argument("--client-processes", type=_bounded(int, 1, 64), default=2)
    run.add_argument("--cpu", type=int, help="run the server and the clients on this CPU (Linux)")
    run.add_argument("--out", help="write the results as JSON")
    run.add_argument("--plot", help="write an overview figure (PNG, SVG, PDF)")
    run.add_argument("--quick", action="store_true", help="0.3 s cells, clients 1,8")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    parser = argparse.ArgumentParser(
        prog="python -m minisocket.bench",
        description="Benchmarks: every server in a process of its own, closed-loop clients "
        "in others, numbers over one measured window.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_parser(sub)
    ratios = sub.add_parser(
        "ratios", help="minisocket against socketserver and asyncio, as ratios with targets"
    )
    ratios.add_argument("--duration", type=_bounded(float, 0.05, 600), default=1.5)
    ratios.add_argument("--repeat", type=_bounded(int, 1, 100), default=5, help="runs per cell")
    ratios.add_argument("--trials", type=_bounded(int, 1, 1000), default=15, help="shutdowns")
    ratios.add_argument("--json", help="also write every number to this file")
    ratios.add_argument("--no-progress", action="store_true", help="no progress bar")
    soak = sub.add_parser("soak", help="many connections for long: no errors, memory flat")
    soak.add_argument("--duration", type=_bounded(float, 0.5, 86400), default=60.0)
    soak.add_argument("--select", type=_bounded(int, 1, 5000), default=1000)
    soak.add_argument("--threaded", type=_bounded(int, 1, 2000), default=200)
    record = sub.add_parser("record", help="re-record the runs notebook 07 plots")
    record.add_argument("directory", nargs="?", default="notebooks/data")
    record.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.command == "run":
        if args.cpu is not None:
            allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
            if args.cpu not in allowed:
                parser.error(f"--cpu {args.cpu}: not a CPU this process may run on")
        if args.clients is None:
            args.clients = _clients(QUICK_CLIENTS if args.quick else DEFAULT_CLIENTS)
        if args.duration is None:
            args.duration = QUICK_DURATION if args.quick else 2.0
    if args.command == "record" and not os.path.isdir(args.directory):
        parser.error(f"record: {args.directory} is not a directory")
    return args


def _load(machine: dict[str, Any]) -> str:
    """ ", load 1.3": how busy the machine was before the run (others' work counts too)."""
    return "" if machine.get("load") is None else f", load {machine['load']:.1f}"


def _progress(args: argparse.Namespace, total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="cell", disable=args.no_progress, file=sys.stderr)


def _ticker(bar: Any) -> Callable[[str], None]:
    def progress(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    return progress


def _run(args: argparse.Namespace) -> int:
    from .record import dump
    from .report import cells_table
    from .runner import LoadConfig, run_matrix

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        from .plots import figure
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
    cells = len(args.servers) * len(args.clients) * args.repeat
    with _progress(args, cells) as bar:
        run = run_matrix(args.servers, args.clients, config, args.repeat, _ticker(bar))
    machine, config = run["machine"], run["config"]
    print(
        f"{machine['cpus']} CPUs ({machine['cpu_model']}), Python {machine['python']}, "
        f"{machine['os']}{_load(machine)}; {args.mode} mode, {args.size}-byte messages, "
        f"{args.duration:g} s "
        f"per cell"
        + (f", {args.repeat} runs each, interleaved" if args.repeat > 1 else "")
        + ("" if args.cpu is None else f"; server and clients on CPU {args.cpu} only")
    )
    if slow:
        print(
            f"{args.slow_fraction:.0%} of requests do {config['work_units']:,} turns of a loop "
            f"({args.work_ms:g} ms on an idle core here): the same work under every server"
        )
    columns = RUN_COLUMNS[args.mode == "slow"]
    print(cells_table(run["results"], columns))
    print("CPU: shares of one core over the measured window; CPU us/req: the server's")
    if args.out:
        dump(args.out, run, args.argv)
    if args.plot:
        figure(run).savefig(args.plot, dpi=110)
    return 0


def _ratios(args: argparse.Namespace) -> int:
    from .ratios import cells_needed, ratios, report
    from .record import dump
    from .targets import TARGETS

    with _progress(args, len(cells_needed(TARGETS)) * args.repeat) as bar:
        run = ratios(args.duration, args.repeat, args.trials, progress=_ticker(bar))
    machine = run["machine"]
    print(
        f"machine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"Python {machine['python']}, {machine['os']}{_load(machine)}"
    )
    print(report(run))
    if args.json:
        dump(args.json, run, args.argv)
    return 0


def _soak(args: argparse.Namespace) -> int:
    from .soak import main as soak

    return soak([("select", args.select), ("threaded", args.threaded)], args.duration)


def _record(args: argparse.Namespace) -> int:
    from .ratios import cells_needed
    from .record import REFERENCE, REPEAT, record
    from .targets import TARGETS

    total = sum(len(s) * len(c) for s, c, _ in REFERENCE.values()) * REPEAT
    with _progress(args, total + len(cells_needed(TARGETS)) * 5) as bar:
        for path in record(args.directory, args.argv, _ticker(bar)):
            print("wrote", path)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = {"run": _run, "ratios": _ratios, "soak": _soak, "record": _record}[args.command]
    # numpy, matplotlib and tqdm come with the `bench` extra, not with minisocket itself:
    # --help needs none of them, and a run without them says what to install.
    try:
        import numpy  # noqa: F401
        import tqdm  # noqa: F401
    except ModuleNotFoundError as missing:
        raise SystemExit(
            f"python -m minisocket.bench needs {missing.name}: "
            "pip install 'minisocket[bench]' (or '.[bench]' in a checkout)"
        ) from None
    return command(args)


if __name__ == "__main__":
    raise SystemExit(main())
