"""Drive servers with the load generator: processes, barrier, measured window, repeats.

For every (server, concurrency) cell a fresh server process is started, the client
processes connect, and only when all are connected does the clock start.  Everything is
measured over the same window (after ``warmup``, for ``duration`` seconds): the
requests, the clients' CPU (their own ``process_time``) and the server's CPU (from
``/proc``, with the CPU of the children a forking server starts), so a result says who
ran out of CPU -- and the grace period that waits for starved clients counts in none of
it.

:func:`run_matrix` runs every cell ``repeat`` times, the repetitions interleaved (every
cell once, then every cell again), so that the slow drifts of a shared machine hit every
server alike.  The repetition with the median throughput represents the cell; every
repetition's headline figures are kept in its ``runs``, for ranges.
"""

from __future__ import annotations

import json
import os
import platform
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from .kinds import KINDS
from .servers import calibrate
from .stats import summarize

__all__ = ["RUN_FIELDS", "LoadConfig", "machine", "make_cell", "run_cell", "run_matrix"]

_PYTHON = [sys.executable, "-m"]
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# A client process using this share of one core over the window was itself the limit.
CLIENT_BOUND = 0.9
# The figures of every repetition a cell keeps, for ranges.
RUN_FIELDS = (
    "throughput", "p50_ms", "p99_ms", "server_cpu", "cpu_us_per_request", "served", "other_cpu",
)  # fmt: skip


@dataclass(frozen=True)
class LoadConfig:
    """What the clients do; see :mod:`minisocket.bench.load` for the modes."""

    mode: str = "echo"
    size: int = 64
    duration: float = 2.0
    warmup: float = 0.2
    slow_fraction: float = 0.0
    work_ms: float = 0.0  # CPU per slow request, on an idle core
    work_units: int = 0  # the same as work turns (0: calibrate from work_ms)
    client_processes: int = 2
    grace: float = 2.0  # how long clients wait for replies after the window
    # Run the server and every client process on this one CPU (Linux), so that no
    # wake-up has to cross CPUs; None lets the scheduler place them.
    cpu: int | None = None

    def calibrated(self) -> LoadConfig:
        """This config with ``work_units`` set, if slow requests need it."""
        if self.mode != "slow" or self.work_units or not self.work_ms:
            return self
        return replace(self, work_units=calibrate(self.work_ms))


def machine() -> dict[str, Any]:
    """The facts a reader needs to judge the numbers."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        # runnable processes, averaged over the last minute, before this run started:
        # above 0 means others were using the machine too
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
    }


def _stat_cpu(pid: int | str, reaped: bool) -> float:
    """CPU seconds of *pid* (user + system; with *reaped*, also of its reaped children)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[11:15] are utime, stime, cutime, cstime (counted after pid and comm)
    return sum(int(x) for x in fields[11 : 15 if reaped else 13]) / _CLK_TCK


def _live_cpu(pid: str) -> float:
    """CPU seconds of a live process's threads, to the nanosecond (``schedstat``); of a
    child that has exited but is not yet reaped, what ``stat`` still says."""
    total, found = 0.0, False
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(task.read_text().split()[0]) / 1e9
            found = True
        except (OSError, ValueError, IndexError):
            pass
    return total if found else _stat_cpu(pid, reaped=True)


def _tree_cpu(pid: int) -> float:
    """CPU seconds of *pid* (all its threads, live or gone), its reaped children and its
    live children.

    ``/proc/PID/stat`` counts in clock ticks (10 ms here) and rounds down: right for a
    long-lived server, but a forking server's children are young, and a child that has
    used 5 ms reads 0 there; so live children are read from ``schedstat`` instead.
    """
    return _stat_cpu(pid, reaped=True) + sum(_live_cpu(c) for c in _children(pid))


def _children(pid: int) -> set[str]:
    """The pids whose parent is *pid*: ``task/*/children``, and a scan of ``/proc`` for
    their parent's pid (while children are being forked, either may miss some)."""
    found: set[str] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.update(task.read_text().split())
        except OSError:
            pass
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    ppid = f.read().rsplit(")", 1)[1].split()[1]
            except (OSError, IndexError):
                continue
            if ppid == str(pid):
                found.add(entry.name)
    return found


def _busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy (Linux ``/proc/stat``: user, nice,
    system, interrupts and the time a hypervisor gave to other guests), or NaN."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def _rss_kib(pid: int) -> int:
    """Resident memory of *pid* in KiB (Linux /proc), or 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pinned(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["--cpu", str(cpu)]


def _readline(stream: IO[str], proc: subprocess.Popen[str], timeout: float) -> str:
    """Read one line, but never wait longer than *timeout* seconds."""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            raise TimeoutError(f"no answer from {proc.args!r} within {timeout} s")
    return stream.readline()


def _start_server(
    name: str, units: int, cpu: int | None, log: IO[bytes]
) -> tuple[subprocess.Popen[str], int]:
    """Start a server process; its log (say, the pool's refusals) goes to *log*."""
    proc = subprocess.Popen(
        [*_PYTHON, "minisocket.bench.servers", name, "--work-units", str(units), *_pinned(cpu)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    line = _readline(proc.stdout, proc, timeout=20)
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        log.seek(0)
        raise RuntimeError(f"server {name!r} did not start: {log.read().decode()[-2000:]}")
    return proc, int(line.split()[1])


def _stop(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start_clients(port: int, clients: int, config: LoadConfig, tmp: str) -> list[Any]:
    n_procs = max(1, min(config.client_processes, clients))
    shares = [clients // n_procs + (i < clients % n_procs) for i in range(n_procs)]
    started = []
    for i, share in enumerate(shares):
        out = os.path.join(tmp, f"lat{i}.bin")
        args = {
            "port": port, "connections": share, "mode": config.mode, "size": config.size,
            "duration": config.duration, "warmup": config.warmup, "grace": config.grace,
            "slow-fraction": config.slow_fraction, "seed": i, "out": out,
        }  # fmt: skip
        command = [*_PYTHON, "minisocket.bench.load"]
        command += [f"--{k}={v}" for k, v in args.items()] + _pinned(config.cpu)
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append((proc, out))
    return started


def _drive(server: subprocess.Popen[str], procs: list[Any], config: LoadConfig) -> dict[str, Any]:
    """Release the clients; read the server's CPU at both ends of the window and its
    memory twice a second; collect the clients' reports."""
    started = time.monotonic() + 0.005  # the clients' clock starts then, all at once
    for proc in procs:
        proc.stdin.write(f"GO {int(started * 1e9)}\n")
        proc.stdin.flush()
    edges = [started + config.warmup, started + config.warmup + config.duration]
    marks: list[tuple[float, float, float]] = []  # (time, server CPU, busy CPU) at the edges
    limit = edges[1] + config.grace + 30
    rss: list[int] = []
    next_rss = started
    while any(p.poll() is None for p in procs) and time.monotonic() < limit:
        now = time.monotonic()
        if len(marks) < 2 and now >= edges[len(marks)]:
            marks.append((now, _tree_cpu(server.pid), _busy_cpu()))
        if now >= next_rss:
            rss.append(_rss_kib(server.pid))
            next_rss += 0.5
        wake = min([next_rss, *edges[len(marks) : len(marks) + 1]])
        time.sleep(max(0.0, min(0.05, wake - time.monotonic())))
    while len(marks) < 2:  # the clients ended early (they failed): close the window
        marks.append((time.monotonic(), _tree_cpu(server.pid), _busy_cpu()))
    reports = []
    for proc in procs:
        reports.append(json.loads(_readline(proc.stdout, proc, timeout=10)))
        proc.wait(10)
    (t0, cpu0, busy0), (t1, cpu1, busy1) = marks
    return {
        "reports": reports,
        "server_cpu": (cpu1 - cpu0) / (t1 - t0),
        "busy_cpu": (busy1 - busy0) / (t1 - t0),
        "rss": rss,
    }


def make_cell(
    name: str,
    clients: int,
    config: LoadConfig,
    latencies: Any,
    reports: Sequence[dict[str, Any]],
    server_cpu: float,
    rss: list[int],
    busy_cpu: float = float("nan"),
) -> dict[str, Any]:
    """One cell's figures from what the processes reported (see the module docstring).

    The requests are those answered within the window; ``late`` counts the replies
    that came in the grace period after it.  ``server_cpu`` and ``client_cpu`` are
    shares of one core over the window;
    ``cpu_us_per_request`` is the server's CPU per answered request.  ``client_bound``:
    some client process used at least 90 % of a core -- the clients, not the server,
    may have set the pace.  ``other_cpu``: what the rest of the machine used meanwhile
    (from ``/proc/stat``: other programs, interrupt work, a hypervisor's other guests):
    a cell measured while others were busy is a noisy cell.  In slow mode,
    ``work_cores`` is the CPU the slow requests' work needed (slow requests per second
    x ``work_ms``), which the server's CPU must cover.
    """
    kind = KINDS[name]
    client_cpu = [float(r["cpu"]) for r in reports]
    cell = {
        "server": name,
        "label": kind.label,
        "library": kind.library,
        "model": kind.model,
        "mode": config.mode,
        "clients": clients,
        **summarize(
            latencies,
            config.duration,
            slow=config.mode == "slow",
            served=sum(r["served"] for r in reports),
            waiting=sum(r["waiting"] for r in reports),
            refused=sum(r["refused"] for r in reports),
            errors=sum(r["errors"] for r in reports),
            late=sum(r["late"] for r in reports),
            timeouts=sum(r["timeouts"] for r in reports),
            client_processes=len(reports),
            client_cpu=sum(client_cpu),
            client_bound=max(client_cpu, default=0.0) >= CLIENT_BOUND,
            server_cpu=server_cpu,
            server_rss_kib=rss,
        ),
    }
    rate = cell["throughput"]
    cell["cpu_us_per_request"] = server_cpu / rate * 1e6 if rate else float("nan")
    # everything else the machine did meanwhile: other programs, the kernel's interrupt
    # work (some of loopback's), a hypervisor's other guests
    cell["other_cpu"] = max(0.0, busy_cpu - server_cpu - cell["client_cpu"])
    if config.mode == "slow":
        cell["work_cores"] = cell["slow_requests"] / config.duration * config.work_ms / 1000
    cell["runs"] = [{k: cell[k] for k in RUN_FIELDS}]
    return cell


def run_cell(name: str, clients: int, config: LoadConfig) -> dict[str, Any]:
    """Run one server at one concurrency, once; return its cell (see :func:`make_cell`)."""
    config = config.calibrated()
    procs: list[subprocess.Popen[str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="minisocket-bench-") as tmp,
        tempfile.TemporaryFile() as log,
    ):
        server, port = _start_server(name, config.work_units, config.cpu, log)
        try:
            started = _start_clients(port, clients, config, tmp)
            procs = [proc for proc, _ in started]
            for proc in procs:
                assert proc.stdout is not None
                line = _readline(proc.stdout, proc, timeout=30)
                if not line.startswith("CONNECTED"):
                    raise RuntimeError(f"load generator failed to connect: {line!r}")
            measured = _drive(server, procs, config)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            _stop(server)
        latencies = np.concatenate([np.fromfile(out, dtype="<i8") for _, out in started])
    return make_cell(
        name,
        clients,
        config,
        latencies,
        measured["reports"],
        measured["server_cpu"],
        measured["rss"],
        measured["busy_cpu"],
    )


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput, keeping every run's figures in ``runs``."""
    ordered = sorted(runs, key=lambda r: float(r["throughput"]))
    return {**ordered[(len(ordered) - 1) // 2], "runs": [r["runs"][0] for r in runs]}


def run_matrix(
    servers: Iterable[str],
    clients: Iterable[int],
    config: LoadConfig,
    repeat: int = 1,
    progress: Callable[[str], None] | None = None,
    cell: Callable[[str, int, LoadConfig], dict[str, Any]] = run_cell,
) -> dict[str, Any]:
    """Every server at every concurrency, *repeat* times interleaved; with machine and
    config.  *progress*, if given, is called with a label after each cell; *cell* runs
    one (the tests give a stand-in)."""
    config = config.calibrated()
    info = machine()
    plan = [(name, n) for name in servers for n in clients]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {key: [] for key in plan}
    for _ in range(repeat):
        for name, n in plan:
            runs[name, n].append(cell(name, n, config))
            if progress is not None:
                progress(f"{name} x {n}")
    return {
        "machine": info,
        "config": asdict(config),
        "repeat": repeat,
        "results": [median_of(runs[key]) for key in plan],
    }
