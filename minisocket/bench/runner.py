"""Drive one server with the load generator: processes, barrier, numbers.

For every (server, concurrency) cell a fresh server process is started, the client
processes connect, and only when all are connected does the clock start.  The server's
CPU time comes from ``/proc/<pid>/stat`` (Linux) and the clients' from their own
``process_time``, so a result says whether the client or the server ran out of CPU.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import IO, Any

import numpy as np

from .servers import SERVERS
from .stats import summarize

__all__ = ["LoadConfig", "machine", "run_cell", "run_matrix"]

_PYTHON = [sys.executable, "-m"]
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class LoadConfig:
    """What the clients do; see :mod:`minisocket.bench.load` for the modes."""

    mode: str = "echo"
    size: int = 64
    duration: float = 2.0
    warmup: float = 0.2
    slow_fraction: float = 0.0
    work_ms: float = 0.0
    client_processes: int = 2
    grace: float = 2.0  # how long clients wait for replies after the run
    # Run the server and every client process on this one CPU (Linux), so that no
    # wake-up has to cross CPUs; None lets the scheduler place them.
    cpu: int | None = None


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
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of *pid* and its reaped children (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # fields[11:15] are utime, stime, cutime, cstime (after pid and comm)
    return sum(int(x) for x in fields[11:15]) / _CLK_TCK


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


def _start_server(name: str, work_ms: float, cpu: int | None) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [*_PYTHON, "minisocket.bench.servers", name, "--work-ms", str(work_ms), *_pinned(cpu)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = _readline(proc.stdout, proc, timeout=20)
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"server {name!r} did not start: {line!r}")
    return proc, int(line.split()[1])


def _readline(stream: IO[str], proc: subprocess.Popen[str], timeout: float) -> str:
    """Read one line, but never wait longer than *timeout* seconds."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            raise TimeoutError(f"no answer from {proc.args!r} within {timeout} s")
    return stream.readline()


def _stop(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_cell(name: str, clients: int, config: LoadConfig) -> dict[str, Any]:
    """Run one server at one concurrency; return its summary (see :func:`summarize`)."""
    server, port = _start_server(name, config.work_ms, config.cpu)
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="minisocket-bench-") as tmp:
        try:
            n_procs = max(1, min(config.client_processes, clients))
            shares = [clients // n_procs + (i < clients % n_procs) for i in range(n_procs)]
            outs = [os.path.join(tmp, f"lat{i}.bin") for i in range(n_procs)]
            for i, (share, out) in enumerate(zip(shares, outs, strict=True)):
                procs.append(
                    subprocess.Popen(
                        [
                            *_PYTHON,
                            "minisocket.bench.load",
                            "--port",
                            str(port),
                            "--connections",
                            str(share),
                            "--mode",
                            config.mode,
                            "--size",
                            str(config.size),
                            "--duration",
                            str(config.duration),
                            "--warmup",
                            str(config.warmup),
                            "--grace",
                            str(config.grace),
                            "--slow-fraction",
                            str(config.slow_fraction),
                            "--seed",
                            str(i),
                            "--out",
                            out,
                            *_pinned(config.cpu),
                        ],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
            for proc in procs:
                assert proc.stdout is not None
                line = _readline(proc.stdout, proc, timeout=30)
                if not line.startswith("CONNECTED"):
                    raise RuntimeError(f"load generator failed to connect: {line!r}")
            server_cpu0 = _cpu_seconds(server.pid)
            started = time.perf_counter()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("GO\n")
                proc.stdin.flush()
            # While the clients run, sample the server's resident memory twice a second.
            limit = started + config.warmup + config.duration + config.grace + 30
            rss: list[int] = []
            while any(p.poll() is None for p in procs) and time.perf_counter() < limit:
                rss.append(_rss_kib(server.pid))
                time.sleep(0.5)
            reports = []
            for proc in procs:
                assert proc.stdout is not None
                reports.append(json.loads(_readline(proc.stdout, proc, timeout=10)))
                proc.wait(10)
            wall = time.perf_counter() - started
            server_cpu = _cpu_seconds(server.pid) - server_cpu0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            _stop(server)
        latencies = np.concatenate([np.fromfile(out, dtype="<i8") for out in outs])
    client_cpu = sum(r["cpu"] for r in reports)
    client_wall = max(r["wall"] for r in reports)
    spec = SERVERS[name]
    return {
        "server": name,
        "label": spec.label,
        "library": spec.library,
        "kind": spec.kind,
        "clients": clients,
        **summarize(
            latencies,
            config.duration,
            errors=sum(r["errors"] for r in reports),
            timeouts=sum(r["timeouts"] for r in reports),
            unserved=sum(r["unserved"] for r in reports),
            client_processes=len(procs),
            # CPU as a fraction of one core over the run: > 0.9 per process means the
            # client, not the server, was the limit.
            client_cpu=client_cpu / client_wall,
            client_saturated=client_cpu / client_wall > 0.9 * len(procs),
            server_cpu=server_cpu / wall,
            server_rss_kib=rss,
        ),
    }


def run_matrix(
    servers: Iterable[str],
    clients: Iterable[int],
    config: LoadConfig,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every server at every concurrency, one cell at a time; with machine and config.

    *progress*, if given, is called with a label after each cell.
    """
    clients = list(clients)
    results = []
    for name in servers:
        for n in clients:
            results.append(run_cell(name, n, config))
            if progress is not None:
                progress(f"{name} x {n}")
    return {"machine": machine(), "config": asdict(config), "results": results}
