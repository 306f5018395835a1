"""The benchmark machinery: statistics, load generator, CLI, and a short soak.

Timing is never asserted from above (the machine is shared); only what physics
guarantees: a request that burns 20 ms of CPU cannot come back in less.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minisocket.bench.plots import style
from minisocket.bench.ratios import Comparison, compare
from minisocket.bench.runner import LoadConfig, run_cell
from minisocket.bench.soak import soak
from minisocket.bench.stats import cdf_points, percentiles, summarize

MS = 1_000_000  # nanoseconds


def test_percentiles_of_known_data() -> None:
    data = np.arange(1, 101) * MS  # 1 ms .. 100 ms
    assert percentiles(data) == pytest.approx(
        {"p50_ms": 50.5, "p90_ms": 90.1, "p99_ms": 99.01, "max_ms": 100.0}
    )
    assert percentiles([7 * MS]) == {"p50_ms": 7.0, "p90_ms": 7.0, "p99_ms": 7.0, "max_ms": 7.0}
    empty = percentiles([])
    assert all(np.isnan(v) for v in empty.values())


def test_cdf_points_span_min_to_max() -> None:
    points = cdf_points(np.arange(1, 1001) * MS, n=11)
    assert points[0] == 1.0 and points[-1] == 1000.0 and points == sorted(points)


def test_summary_separates_slow_requests() -> None:
    signed = np.array([1, 2, 3, -50, 4, -60]) * MS  # negative: slow requests
    summary = summarize(signed, duration=2.0, errors=0)
    assert summary["requests"] == 6 and summary["throughput"] == 3.0
    assert summary["slow_requests"] == 2
    assert summary["max_ms"] == 60.0 and summary["mean_ms"] == 20.0
    assert summary["normal_max_ms"] == 4.0
    assert summary["slow_p50_ms"] == 55.0
    assert summary["errors"] == 0


QUICK = {"duration": 0.5, "warmup": 0.1, "grace": 0.5}


def test_load_generator_against_a_server_of_known_delay() -> None:
    config = LoadConfig(mode="slow", slow_fraction=1.0, work_ms=20.0, **QUICK)
    cell = run_cell("blocking", 1, config)
    assert cell["slow_requests"] == cell["requests"] > 0
    assert cell["slow_p50_ms"] >= 20.0  # every request burns 20 ms of server CPU...
    # ...so one client gets at most 50 per second, give or take the request in flight at
    # each end of the measured window.
    assert cell["requests"] <= QUICK["duration"] * 1000 / 20 + 2


def test_clients_a_blocking_server_never_serves_are_counted() -> None:
    cell = run_cell("blocking", 3, LoadConfig(**QUICK))
    assert cell["unserved"] == 2
    assert cell["requests"] > 0


def test_connection_per_request_mode() -> None:
    cell = run_cell("pool", 4, LoadConfig(mode="connect", **QUICK))
    assert cell["requests"] > 0 and cell["errors"] == 0


pinnable = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")


@pinnable
def test_cpu_pins_every_thread_of_the_server() -> None:
    cpu = min(os.sched_getaffinity(0))
    server = subprocess.Popen(
        [sys.executable, "-m", "minisocket.bench.servers", "pool", "--cpu", str(cpu)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"ping")  # the pool starts its workers with the first request
            assert client.recv(4) == b"ping"
        threads = list(Path(f"/proc/{server.pid}/task").iterdir())
        assert len(threads) >= 16
        for task in threads:
            status = (task / "status").read_text()
            assert f"Cpus_allowed_list:\t{cpu}\n" in status
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)


@pinnable
def test_a_cell_pinned_to_one_cpu() -> None:
    cell = run_cell("select", 2, LoadConfig(cpu=min(os.sched_getaffinity(0)), **QUICK))
    assert cell["requests"] > 0 and cell["errors"] == cell["unserved"] == 0


def test_cli_end_to_end(tmp_path: Path) -> None:
    out, plot = tmp_path / "results.json", tmp_path / "latency.png"
    args = ["--quick", "--servers", "blocking,select", "--clients", "1,2", "--no-progress"]
    done = subprocess.run(
        [sys.executable, "-m", "minisocket.bench", *args, "--out", str(out), "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "select" in done.stdout and "p99 ms" in done.stdout
    run = json.loads(out.read_text())
    assert {(r["server"], r["clients"]) for r in run["results"]} == {
        ("blocking", 1),
        ("blocking", 2),
        ("select", 1),
        ("select", 2),
    }
    assert run["machine"]["cpus"] >= 1 and run["config"]["mode"] == "echo"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--servers", "nosuch"], "unknown server nosuch"),
        (["--clients", "0"], "between 1 and 2000"),
        (["--clients", "a,b"], "not a comma-separated list"),
        (["--duration", "-1"], "outside"),
        (["--mode", "fast"], "invalid choice"),
        (["--cpu", "4096"], "not a CPU this process may run on"),
    ],
)
def test_cli_rejects_bad_arguments_clearly(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "minisocket.bench", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr


def test_short_soak_has_no_errors_and_serves_everyone() -> None:
    for server, connections in (("select", 200), ("threaded", 50)):
        cell = soak(server, connections, duration=2.0)
        assert cell["requests"] > 0
        assert (cell["errors"], cell["timeouts"], cell["unserved"]) == (0, 0, 0), cell
        assert np.all(np.array(cell["server_rss_kib"]) > 0)


def test_comparisons_are_judged_run_by_run() -> None:
    ours, theirs = [110.0, 90.0, 105.0], [100.0, 100.0, 100.0]
    mixed = compare("mixed", ours, theirs, target=1.0)
    assert mixed.ratios == pytest.approx([1.1, 0.9, 1.05])
    assert mixed.median == pytest.approx(1.05)
    assert mixed.verdict == "2 of 3 runs meet: within the noise"
    assert "[0.90-1.10]" in mixed.line()
    assert compare("all", ours, theirs, target=0.5).verdict == "meets"
    assert compare("none", ours, theirs, target=2.0).verdict == "MISSES"
    assert Comparison("one", [548.0], 200).verdict == "meets"
    with pytest.raises(ValueError, match="same"):
        compare("unpaired", ours, theirs[:2], target=1.0)


def test_ratios_cli_rejects_bad_arguments() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "minisocket.bench.ratios", "--repeat", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--repeat" in done.stderr


def test_a_tuned_variant_wears_its_servers_colour() -> None:
    assert style("select-busy")["color"] == style("select")["color"]
    assert style("select-busy")["linestyle"] != style("select")["linestyle"]
