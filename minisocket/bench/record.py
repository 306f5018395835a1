"""Recorded runs: what notebook 07 plots, with the facts needed to trust and redo it.

``python -m minisocket.bench record notebooks/data`` writes two files:

``reference-run.json``  :data:`REFERENCE`: every kind of ``SETS["echo"]`` at 1, 8, 64
                        and 256 persistent clients; ``SETS["slow"]`` with 16 clients,
                        5 % of requests doing 20 ms of work; ``SETS["connect"]`` with
                        8 clients opening a connection per request; three servers with
                        one client, everything pinned to one CPU -- each cell
                        ``REPEAT`` times, interleaved
``ratios-run.json``     ``python -m minisocket.bench ratios`` (see :mod:`.ratios`)

Every file written by the bench (``run --out``, ``ratios --json``, ``record``) starts
with a ``meta`` block: the format, the commit of the code that measured (and whether
that code had uncommitted changes), Python, the CPU count and the exact command.
:func:`problems` compares a file with what the current code writes, so a committed run
that no longer matches the code fails a test instead of misleading a reader.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .kinds import SETS

__all__ = ["FORMAT", "REFERENCE", "REPEAT", "dump", "meta", "problems", "record", "reference"]

FORMAT = 2
REPEAT = 3
# name: (servers, clients, LoadConfig arguments)
REFERENCE: dict[str, tuple[Sequence[str], Sequence[int], dict[str, Any]]] = {
    "echo": (SETS["echo"], (1, 8, 64, 256), {"duration": 1.0, "grace": 1.0}),
    "slow": (
        SETS["slow"],
        (16,),
        {"mode": "slow", "duration": 2.0, "grace": 1.0, "slow_fraction": 0.05, "work_ms": 20.0},
    ),
    "connect": (SETS["connect"], (8,), {"mode": "connect", "duration": 1.0, "grace": 1.0}),
    # one client, the server and the clients on one CPU (the first this process may use)
    "pinned": (
        ("select", "select-busy", "asyncio-protocol"),
        (1,),
        {"duration": 1.0, "grace": 1.0, "cpu": "first"},
    ),
}
_CHECKOUT = Path(__file__).resolve().parent.parent.parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(_CHECKOUT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def meta(argv: Sequence[str]) -> dict[str, Any]:
    """The facts a recorded run starts with; *argv* is the bench's command line."""
    commit = _git("rev-parse", "HEAD") if (_CHECKOUT / ".git").exists() else None
    changed = _git("status", "--porcelain", "--", "minisocket") if commit else None
    return {
        "format": FORMAT,
        "commit": commit,  # None: not run from a git checkout
        "dirty": bool(changed),  # the code had changes the commit does not hold
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "command": shlex.join(["python", "-m", "minisocket.bench", *argv]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
    }


def _compact(value: Any) -> Any:
    """4 significant digits, and CDFs cut to 101 points: a file small enough to commit."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, list):
        if len(value) > 101 and all(isinstance(v, float) for v in value):
            step = (len(value) - 1) / 100
            value = [value[round(i * step)] for i in range(101)]
        return [_compact(v) for v in value]
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    return value


def dump(path: str | Path, doc: dict[str, Any], argv: Sequence[str]) -> None:
    """Write *doc* as JSON to *path*, after a ``meta`` block for *argv*."""
    with open(path, "w") as f:
        json.dump({"meta": meta(argv), **_compact(doc)}, f, indent=1)
        f.write("\n")


def reference(
    progress: Callable[[str], None] | None = None, cell: Any = None, repeat: int = REPEAT
) -> dict[str, Any]:
    """Run :data:`REFERENCE`; *cell* stands in for ``runner.run_cell`` (tests)."""
    from .runner import LoadConfig, run_matrix

    extra = {} if cell is None else {"cell": cell}
    runs = {}
    for name, (servers, clients, config) in REFERENCE.items():
        if config.get("cpu") == "first":
            config = {**config, "cpu": min(os.sched_getaffinity(0))}
        runs[name] = run_matrix(servers, clients, LoadConfig(**config), repeat, progress, **extra)
    return runs


def record(
    directory: str | Path, argv: Sequence[str], progress: Callable[[str], None] | None = None
) -> list[Path]:
    """Record both runs into *directory*; return the paths written."""
    from .ratios import ratios

    directory = Path(directory)
    written = [directory / "reference-run.json", directory / "ratios-run.json"]
    dump(written[0], reference(progress), argv)
    dump(written[1], ratios(progress=progress), argv)
    return written


# -- the format check -----------------------------------------------------------------


def _stand_in(name: str, clients: int, config: Any) -> dict[str, Any]:
    """A cell made by the current code from made-up process reports (no processes)."""
    from .runner import make_cell

    report = {"served": clients, "waiting": 0, "refused": 0, "errors": 0, "late": 0, "timeouts": 0}
    latencies = [1_000_000, -2_000_000, 3_000_000]
    return make_cell(name, clients, config, latencies, [{**report, "cpu": 0.5}], 0.5, [1])


def _expected(kind: str) -> dict[str, Any]:
    """What the current code writes for a *kind* of file, from stand-in cells."""
    from .ratios import ratios

    if kind == "ratios":
        doc = ratios(repeat=2, trials=2, cell=_stand_in, shutdown=lambda module, n: [0.1] * n)
    else:
        doc = reference(cell=_stand_in, repeat=2)
    return {"meta": meta([]), **doc}


def _shape(value: Any) -> Any:
    """The structure of a JSON value: key sets and element shapes, not the numbers."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value and isinstance(value[0], dict | list) else []
    if isinstance(value, bool) or value is None:
        return "bool" if isinstance(value, bool) else "none"
    return "number" if isinstance(value, int | float) else "str"


def _differences(got: Any, want: Any, path: str) -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}: missing {k!r}" for k in want if k not in got]
        out += [f"{path}: unknown {k!r}" for k in got if k not in want]
        for k in want.keys() & got.keys():
            out += _differences(got[k], want[k], f"{path}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        return _differences(got[0], want[0], f"{path}[]") if got and want else []
    if want != got and "none" not in (want, got):  # None stands for "not measured"
        return [f"{path}: {got} where the code writes {want}"]
    return []


def problems(doc: dict[str, Any]) -> list[str]:
    """How a recorded run differs from what the current code writes (empty: none)."""
    kind = "ratios" if "comparisons" in doc else "reference"
    want = _expected(kind)
    out = _differences(_shape(doc), _shape(want), kind)
    info = doc.get("meta", {})
    if info.get("format") != FORMAT:
        out.append(f"format {info.get('format')}, the code writes {FORMAT}")
    if not re.fullmatch(r"[0-9a-f]{40}", str(info.get("commit"))) or info.get("dirty"):
        out.append("not recorded from a clean, committed checkout")
    if kind == "ratios":
        labels = [c["label"] for c in doc.get("comparisons", [])]
        if labels != [c["label"] for c in want["comparisons"]]:
            out.append(f"comparisons {labels} are not the current targets")
    else:
        for name in REFERENCE:
            plan = [(r["server"], r["clients"]) for r in doc.get(name, {}).get("results", [])]
            if plan != [(r["server"], r["clients"]) for r in want[name]["results"]]:
                out.append(f"{name}: the cells are not REFERENCE's")
    return out
