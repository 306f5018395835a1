"""minisocket against its references, as ratios measured in one run.

Every cell the targets (:mod:`minisocket.bench.targets`) need runs ``repeat`` times,
the repetitions interleaved, so run *i* of two servers ran minutes apart at most and met
the same machine.  A comparison is therefore made run by run: it reports the median of
the per-run ratios, their range, and a verdict -- "meets" when every run meets the
target, "MISSES" when none does, and "k of n" otherwise (the difference is within the
noise).  Ratios are > 1 when the first server answers more requests per second.
``shutdown()`` is judged trial by trial against its limit.  Nothing here asserts: the
machine is shared and noisy, so the numbers are reported, not tested.
"""

from __future__ import annotations

import random
import socketserver
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import minisocket

from .report import DEFAULT, cells_table, render
from .runner import LoadConfig, machine, median_of, run_cell
from .targets import SHUTDOWN, TARGETS, Target

__all__ = ["Comparison", "cells_needed", "compare", "ratios", "report", "shutdown_latency"]


def shutdown_latency(module: Any, trials: int, seed: int = 0) -> list[float]:
    """Seconds each ``shutdown()`` took, with ``serve_forever(poll_interval=0.5)``.

    Before each shutdown the loop runs for a random 0.05-0.5 s, so a polling loop is
    caught at a random point of its interval, as a real shutdown would be.
    """
    rng = random.Random(seed)
    times = []
    for _ in range(trials):
        server = module.TCPServer(("127.0.0.1", 0), module.BaseRequestHandler)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN.poll_interval}
        )
        thread.start()
        time.sleep(rng.uniform(0.05, SHUTDOWN.poll_interval))
        started = time.perf_counter()
        server.shutdown()
        times.append(time.perf_counter() - started)
        thread.join()
        server.server_close()
    return times


@dataclass(frozen=True)
class Comparison:
    """One comparison, judged run by run against *target* (None: not judged)."""

    label: str
    ratios: list[float]  # one per interleaved repetition
    target: float | None

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        met = sum(r >= self.target for r in self.ratios)
        if met == len(self.ratios):
            return "meets"
        if met == 0:
            return "MISSES"
        return f"{met} of {len(self.ratios)} runs meet: within the noise"

    def row(self) -> list[str]:
        return [
            self.label,
            f"{self.median:.2f}x",
            f"{min(self.ratios):.2f}-{max(self.ratios):.2f}",
            "" if self.target is None else f">= {self.target:g}x",
            self.verdict,
        ]


def compare(
    label: str, ours: Sequence[float], theirs: Sequence[float], target: float | None
) -> Comparison:
    """Compare paired measurements (higher is better for *ours*) run by run."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError("compare() needs the same, non-zero number of runs on both sides")
    return Comparison(label, [a / b for a, b in zip(ours, theirs, strict=True)], target)


def cells_needed(targets: Sequence[Target]) -> list[tuple[str, str, int]]:
    """(server, mode, clients) of every cell the targets need, each once, in order."""
    keys = [(t.ours, t.mode, t.clients) for t in targets]
    keys += [(t.theirs, t.mode, t.clients) for t in targets]
    return sorted(set(keys), key=lambda k: (k[1] != "echo", k[2], keys.index(k)))


def ratios(
    duration: float = 1.5,
    repeat: int = 5,
    trials: int = 15,
    targets: Sequence[Target] = TARGETS,
    progress: Callable[[str], None] | None = None,
    cell: Callable[[str, int, LoadConfig], dict[str, Any]] = run_cell,
    shutdown: Callable[[Any, int], list[float]] = shutdown_latency,
) -> dict[str, Any]:
    """Run the comparisons; return every number (see :func:`report` for the text).

    *cell* runs one cell and *shutdown* times the shutdowns (the tests give stand-ins).
    """
    info = machine()
    mini = shutdown(minisocket, trials)
    std = shutdown(socketserver, trials)
    configs = {mode: LoadConfig(mode=mode, duration=duration) for mode in ("echo", "connect")}
    plan = cells_needed(targets)
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {key: [] for key in plan}
    for _ in range(repeat):  # interleaved: every cell once, then every cell again
        for name, mode, clients in plan:
            runs[name, mode, clients].append(cell(name, clients, configs[mode]))
            if progress is not None:
                progress(f"{name} x {clients} ({mode})")

    def rates(name: str, mode: str, clients: int) -> list[float]:
        return [float(r["throughput"]) for r in runs[name, mode, clients]]

    comparisons = [
        compare(
            t.label,
            rates(t.ours, t.mode, t.clients),
            rates(t.theirs, t.mode, t.clients),
            t.minimum,
        )
        for t in targets
    ]
    return {
        "machine": info,
        "config": {"duration": duration, "repeat": repeat, "trials": trials},
        "shutdown_s": {"minisocket": mini, "socketserver": std},
        "cells": [median_of(runs[key]) for key in plan],
        "comparisons": [{**vars(c), "median": c.median, "verdict": c.verdict} for c in comparisons],
    }


def report(run: dict[str, Any]) -> str:
    """The text of a :func:`ratios` run: the cells, the shutdown, the comparisons."""
    config = run["config"]
    lines = [
        f"every cell {config['repeat']} times, interleaved, {config['duration']:g} s each; "
        "the run with the median rate shown, req/s range over all runs",
        cells_table(run["cells"], ("server", "mode", *DEFAULT[1:]), indent="  "),
        "",
    ]
    mini, std = run["shutdown_s"]["minisocket"], run["shutdown_s"]["socketserver"]
    within = sum(t * 1000 < SHUTDOWN.maximum_ms for t in mini)
    verdict = {len(mini): "meets", 0: "MISSES"}.get(within, f"{within} of {len(mini)} trials")
    lines.append(
        f"shutdown(), serve_forever(poll_interval={SHUTDOWN.poll_interval:g}), "
        f"{len(mini)} trials each:"
    )
    lines.append(
        render(
            ["", "median ms", "range ms", "target", "verdict"],
            [
                [
                    "minisocket",
                    f"{statistics.median(mini) * 1000:.3f}",
                    f"{min(mini) * 1000:.3f}-{max(mini) * 1000:.3f}",
                    f"< {SHUTDOWN.maximum_ms:g} ms",
                    verdict,
                ],
                [
                    "socketserver",
                    f"{statistics.median(std) * 1000:.1f}",
                    f"{min(std) * 1000:.1f}-{max(std) * 1000:.1f}",
                    "",
                    "",
                ],
            ],
            "  ",
        )
    )
    lines.append("")
    lines.append(f"ratios of requests per second: median of {config['repeat']} paired runs")
    comparisons = [Comparison(c["label"], c["ratios"], c["target"]) for c in run["comparisons"]]
    lines.append(
        render(
            ["comparison", "median", "range", "target", "verdict"],
            [c.row() for c in comparisons],
            "  ",
        )
    )
    bound = [f"{c['server']} x {c['clients']}" for c in run["cells"] if c["client_bound"]]
    lines.append("\nclient-bound cells: " + (", ".join(bound) if bound else "none"))
    return "\n".join(lines)
