"""Record the reference run that notebook 06 plots: ``python -m minisocket.bench.reference``.

Two matrices in one JSON file, each with the machine it ran on:

``echo``  every server kind at 1, 8, 64 and 256 persistent clients, 1 s per cell
``slow``  select, threaded and forking servers, 16 clients, 5 % of requests burning
          20 ms of CPU on the server

CDFs are kept to 101 points and numbers to 4 significant digits, so the file stays
small enough to commit and read.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .runner import LoadConfig, run_matrix

__all__ = ["ECHO_SERVERS", "SLOW_SERVERS", "main", "record"]

ECHO_SERVERS = [
    "blocking",
    "select",
    "threaded",
    "pool",
    "forking",
    "stdlib-threaded",
    "asyncio-protocol",
]
ECHO_CLIENTS = [1, 8, 64, 256]
SLOW_SERVERS = ["select", "threaded", "forking"]


def _compact(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, list):
        if len(value) > 101 and all(isinstance(v, float) for v in value):
            step = (len(value) - 1) / 100
            value = [value[round(i * step)] for i in range(101)]
        return [_compact(v) for v in value]
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if k != "server_rss_kib"}
    return value


def record(progress: Any = None) -> dict[str, Any]:
    echo = run_matrix(ECHO_SERVERS, ECHO_CLIENTS, LoadConfig(duration=1.0), progress)
    slow_config = LoadConfig(mode="slow", duration=2.0, slow_fraction=0.05, work_ms=20.0)
    slow = run_matrix(SLOW_SERVERS, [16], slow_config, progress)
    return {"echo": _compact(echo), "slow": _compact(slow)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minisocket.bench.reference")
    parser.add_argument("out", help="where to write the JSON (notebooks/data/reference-run.json)")
    args = parser.parse_args(argv)
    run = record(progress=lambda label: print("done:", label, flush=True))
    with open(args.out, "w") as f:
        json.dump(run, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
