"""The benchmark machinery: statistics, load generator, CLI, recorded runs, a short soak.

Timing is never asserted from above (the machine is shared); only what physics and the
interpreter guarantee -- a request that does 20 ms of work cannot come back in less, and
four processes cannot use more than two CPUs -- with wide margins.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import minisocket
from minisocket.bench import exercises, kinds, record, report, servers, solutions, targets
from minisocket.bench.load import _Window
from minisocket.bench.plots import style
from minisocket.bench.ratios import Comparison, compare, ratios
from minisocket.bench.ratios import report as ratios_report
from minisocket.bench.runner import LoadConfig, make_cell, run_cell
from minisocket.bench.soak import soak
from minisocket.bench.stats import cdf_points, percentiles, summarize

ROOT = Path(__file__).resolve().parent.parent
MS = 1_000_000  # nanoseconds
QUICK = {"duration": 0.5, "warmup": 0.1, "grace": 0.5}


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
    summary = summarize(signed, duration=2.0, slow=True, errors=0)
    assert summary["requests"] == 6 and summary["throughput"] == 3.0
    assert summary["slow_requests"] == 2
    assert summary["max_ms"] == 60.0 and summary["mean_ms"] == 20.0
    assert summary["normal_max_ms"] == 4.0
    assert summary["slow_p50_ms"] == 55.0
    assert summary["errors"] == 0
    # a slow-mode cell has the same figures even when no slow request came back
    assert np.isnan(summarize(np.array([1, 2]) * MS, 1.0, slow=True)["slow_p50_ms"])


# -- the server kinds -----------------------------------------------------------------


def test_the_sets_name_known_kinds_and_the_panel_set_is_minisocket() -> None:
    for members in kinds.SETS.values():
        assert set(members) <= set(kinds.KINDS)
    for name in kinds.SETS["minisocket"]:
        kind = kinds.KINDS[name]
        assert kind.library == "minisocket" and kind.base is not None
        assert kind.base.__module__.startswith("minisocket.")
    assert kinds.names("blocking,slow") == ["blocking", "select", "threaded", "pool", "forking"]
    with pytest.raises(ValueError, match="unknown server nosuch"):
        kinds.names("select,nosuch")


def test_busy_polling_is_the_selector_not_a_server_attribute() -> None:
    server_class = kinds.KINDS["select-busy"].server_class()
    assert server_class.selector_class is minisocket.BusyPollSelector
    assert not hasattr(server_class, "busy_poll")


@pytest.mark.parametrize("name", list(kinds.KINDS))
def test_every_kind_echoes_and_does_the_work_of_a_slow_request(name: str) -> None:
    """In a process of its own, as the bench runs it (a forking server's children must
    not inherit the test's client sockets)."""
    units = servers.calibrate(30)
    command = ["minisocket.bench.servers", name, "--work-units", str(units)]
    server = subprocess.Popen(
        [sys.executable, "-m", *command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"ping")
            assert client.recv(64) == b"ping"
            started = time.perf_counter()
            client.sendall(b"!slow")
            assert client.recv(64) == b"!slow"
            assert time.perf_counter() - started >= 0.010  # 30 ms of work on an idle core
    finally:
        assert server.stdin is not None
        server.stdin.close()
        assert server.wait(10) == 0


def test_a_slow_request_is_work_not_wall_time() -> None:
    """Six at once under one interpreter lock: each call still does all its work.

    The old benchmark spun until 20 ms of *wall* time had passed, so a burn that waited
    for the lock did less: here, as little as one 5 ms switch interval.
    """
    units = servers.calibrate(20)
    spent = exercises.cpu_per_call(lambda ms: servers.work(units), 20, threads=6)
    assert min(spent) >= 12

    def wall_clock(ms: float) -> None:
        deadline = time.perf_counter() + ms / 1000
        while time.perf_counter() < deadline:
            pass

    assert min(exercises.cpu_per_call(wall_clock, 20, threads=6)) < 12


# -- the load generator and the runner ------------------------------------------------


def test_load_generator_against_a_server_of_known_work() -> None:
    config = LoadConfig(mode="slow", slow_fraction=1.0, work_ms=20.0, **QUICK)
    cell = run_cell("blocking", 1, config)
    assert cell["slow_requests"] == cell["requests"] > 0
    assert cell["slow_p50_ms"] >= 10.0  # 20 ms of work on an idle core, calibrated
    # ...so one client gets at most 100 per second, give or take the request in flight
    # at each end of the measured window.
    assert cell["requests"] <= QUICK["duration"] * 100 + 2
    assert cell["work_cores"] <= 1.0 + 0.1


def test_slow_requests_cost_the_same_cpu_under_a_forking_server() -> None:
    """Four children on two CPUs: a wall-clock burn would do half its work (the old
    reference run credited forking with 7.4 cores); fixed work costs all of it."""
    config = LoadConfig(mode="slow", slow_fraction=1.0, work_ms=10.0, **QUICK)
    cell = run_cell("forking", 4, config)
    assert cell["served"] == 4 and cell["requests"] > 0
    assert cell["cpu_us_per_request"] >= 0.6 * 10_000
    assert cell["server_cpu"] <= (os.cpu_count() or 1) + 0.2


def test_a_forking_servers_cpu_includes_its_young_children() -> None:
    """256 children do the echoing, each a few milliseconds of CPU in the window, which
    /proc/PID/stat rounds down to 0 ticks: read that way, a forking server's echo
    looked half as costly as the select server's."""
    settled = LoadConfig(**{**QUICK, "warmup": 0.6})  # 256 forks take a while
    forking = run_cell("forking", 256, settled)
    select = run_cell("select", 256, settled)
    assert forking["served"] >= 128 and select["served"] == 256
    assert forking["cpu_us_per_request"] >= 0.8 * select["cpu_us_per_request"]


def test_clients_a_blocking_server_never_serves_are_counted_as_waiting() -> None:
    cell = run_cell("blocking", 3, LoadConfig(**QUICK))
    assert (cell["served"], cell["waiting"], cell["refused"]) == (1, 2, 0)
    assert cell["requests"] > 0


def test_a_full_pool_refuses_and_the_cell_says_so() -> None:
    pool = kinds.KINDS["pool"].server_class()
    clients = pool.max_workers + pool.queue_size + 10
    cell = run_cell("pool", clients, LoadConfig(**QUICK))
    assert (cell["served"], cell["waiting"], cell["refused"]) == (
        pool.max_workers,
        pool.queue_size,
        10,
    )
    table = report.cells_table([cell])
    assert "* percentiles of the answered requests only" in table


def test_connection_per_request_mode() -> None:
    cell = run_cell("pool", 4, LoadConfig(mode="connect", **QUICK))
    assert cell["requests"] > 0 and cell["errors"] == 0 and cell["served"] == 4


def test_the_clients_measure_their_cpu_over_the_window_only() -> None:
    args = type("Args", (), {"warmup": 0.05, "duration": 0.1, "grace": 5.0})()
    window = _Window(args, f"GO {time.monotonic_ns()}")  # type: ignore[arg-type]
    while time.perf_counter_ns() < window.stop_at + 20 * MS:
        time.sleep(window.tick(time.perf_counter_ns()) / 2)
    time.sleep(0.2)  # idle after the window: must not count
    counters = window.report(os.devnull, np.array([], dtype=np.int64))  # type: ignore[arg-type]
    assert 0.08 <= counters["window"] < 0.28  # the idle 0.2 s after it would make >= 0.3


def test_a_cell_says_how_much_cpu_the_rest_of_the_machine_used() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        cell = run_cell("select", 2, LoadConfig(**QUICK))
    finally:
        spinner.kill()
        spinner.wait()
    assert cell["other_cpu"] >= 0.3  # the spinner's share of two CPUs, at the least
    assert "other CPU" in report.cells_table([cell])


def test_a_client_using_a_whole_core_is_flagged() -> None:
    base = {"served": 8, "waiting": 0, "refused": 0, "errors": 0, "late": 0, "timeouts": 0}
    reports = [{**base, "cpu": 0.95}, {**base, "cpu": 0.4}]
    cell = make_cell("select", 16, LoadConfig(), [MS] * 100, reports, 0.8, [1])
    assert cell["client_bound"] and cell["client_cpu"] == pytest.approx(1.35)
    assert cell["cpu_us_per_request"] == pytest.approx(0.8 / (100 / 2.0) * 1e6)
    assert "client-bound" in report.cells_table([cell])
    calm = make_cell("select", 16, LoadConfig(), [MS], [{**base, "cpu": 0.5}], 0.8, [1])
    assert not calm["client_bound"] and "client-bound" not in report.cells_table([calm])


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
    assert cell["requests"] > 0 and cell["errors"] == cell["waiting"] == 0


# -- the command line -----------------------------------------------------------------


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "minisocket.bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_run_end_to_end(tmp_path: Path) -> None:
    out, plot = tmp_path / "results.json", tmp_path / "latency.png"
    args = ["--quick", "--servers", "blocking,select", "--clients", "1,2", "--no-progress"]
    done = bench("run", *args, "--out", str(out), "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[1].split()
    assert header[:3] == ["server", "clients", "req/s"]
    assert {"served", "waiting", "refused"} <= set(header)
    assert "* percentiles of the answered requests only" in done.stdout  # blocking x 2
    run = json.loads(out.read_text())
    assert {(r["server"], r["clients"]) for r in run["results"]} == {
        ("blocking", 1),
        ("blocking", 2),
        ("select", 1),
        ("select", 2),
    }
    assert run["meta"]["command"].startswith("python -m minisocket.bench run --quick")
    assert run["meta"]["cpus"] == os.cpu_count() and run["meta"]["python"]
    assert run["meta"]["format"] == record.FORMAT
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_a_command_run_is_meant() -> None:
    done = bench("--servers", "nosuch")
    assert done.returncode == 2 and "unknown server nosuch" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--servers", "nosuch"], "unknown server nosuch"),
        (["run", "--clients", "0"], "between 1 and 2000"),
        (["run", "--clients", "a,b"], "not a comma-separated list"),
        (["run", "--duration", "-1"], "outside"),
        (["run", "--mode", "fast"], "invalid choice"),
        (["run", "--cpu", "4096"], "not a CPU this process may run on"),
        (["ratios", "--repeat", "0"], "outside"),
        (["soak", "--select", "0"], "outside"),
        (["record", "/nonexistent"], "is not a directory"),
    ],
)
def test_cli_rejects_bad_arguments_clearly(args: list[str], message: str) -> None:
    done = bench(*args, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr


def test_help_and_the_kinds_need_no_numpy() -> None:
    """The panel imports the kinds, and --help must work after a plain pip install."""
    code = (
        "import sys, runpy\n"
        "sys.modules['numpy'] = sys.modules['matplotlib'] = sys.modules['tqdm'] = None\n"
        "from minisocket.bench.kinds import KINDS, SETS\n"
        "sys.argv = ['bench', '--help']\n"
        "runpy.run_module('minisocket.bench', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m minisocket.bench")
    for command in ("run", "ratios", "soak", "record"):
        assert command in done.stdout


def test_short_soak_has_no_errors_and_serves_everyone() -> None:
    for server, connections in (("select", 200), ("threaded", 50)):
        cell = soak(server, connections, duration=2.0)
        assert cell["requests"] > 0 and cell["clean"], cell
        assert np.all(np.array(cell["server_rss_kib"]) > 0)


# -- ratios, targets and recorded runs ------------------------------------------------


def test_comparisons_are_judged_run_by_run() -> None:
    ours, theirs = [110.0, 90.0, 105.0], [100.0, 100.0, 100.0]
    mixed = compare("mixed", ours, theirs, target=1.0)
    assert mixed.ratios == pytest.approx([1.1, 0.9, 1.05])
    assert mixed.median == pytest.approx(1.05)
    assert mixed.verdict == "2 of 3 runs meet: within the noise"
    assert mixed.row()[2] == "0.90-1.10"
    assert compare("all", ours, theirs, target=0.5).verdict == "meets"
    assert compare("none", ours, theirs, target=2.0).verdict == "MISSES"
    assert Comparison("one", [548.0], None).verdict == "-"
    with pytest.raises(ValueError, match="same"):
        compare("unpaired", ours, theirs[:2], target=1.0)


def fake_cell(name: str, clients: int, config: LoadConfig) -> dict[str, Any]:
    """A cell whose rate is set by the server's name: select 3x, pool 2x the others."""
    rate = {"select": 3000, "pool": 2000}.get(name, 1000)
    n = int(rate * config.duration)
    report_ = {"served": clients, "waiting": 0, "refused": 0, "errors": 0, "late": 0, "timeouts": 0}
    return make_cell(name, clients, config, [MS] * n, [{**report_, "cpu": 0.3}], 0.5, [1])


def test_ratios_judges_every_target_and_reports_it() -> None:
    run = ratios(repeat=2, trials=3, cell=fake_cell, shutdown=lambda module, n: [0.0004] * n)
    labels = [c["label"] for c in run["comparisons"]]
    assert labels == [t.label for t in targets.TARGETS]
    verdicts = dict(zip(labels, (c["verdict"] for c in run["comparisons"]), strict=True))
    assert verdicts["select / stdlib-threaded @256"] == "meets"  # 3x >= 2.5x
    assert verdicts["pool / stdlib-threaded connect x8"] == "meets"  # 2x >= 1.5x
    assert verdicts["select-busy / select @1"] == "-"  # reported, not judged
    text = ratios_report(run)
    assert "select / stdlib-threaded @256" in text and "< 1 ms" in text


def test_the_readme_shows_the_targets_the_code_judges() -> None:
    assert targets.markdown() in (ROOT / "README.md").read_text()


DATA = sorted((ROOT / "notebooks" / "data").glob("*.json"))


@pytest.mark.parametrize("path", DATA, ids=lambda p: p.name)
def test_committed_runs_match_the_code_that_reads_them(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert record.problems(doc) == [], "re-record: python -m minisocket.bench record"


def test_the_format_check_notices_a_stale_run() -> None:
    doc = record._expected("reference")
    doc["meta"]["commit"], doc["meta"]["dirty"] = "0" * 40, False
    assert record.problems(doc) == []
    del doc["echo"]["results"][0]["served"]
    doc["echo"]["results"][1]["unserved"] = 3
    doc["meta"]["format"] = 1
    found = record.problems(doc)
    assert "reference.echo.results[]: missing 'served'" in found
    assert any("format 1" in p for p in found)
    doc["meta"]["dirty"] = True
    assert "not recorded from a clean, committed checkout" in record.problems(doc)


def test_a_tuned_variant_wears_its_servers_colour() -> None:
    assert style("select-busy")["color"] == style("select")["color"]
    assert style("select-busy")["linestyle"] != style("select")["linestyle"]


# -- notebook 07's exercises ----------------------------------------------------------


def verdict(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


def reference_run() -> dict[str, Any]:
    return record._expected("reference")  # the shape of the committed run, made up


def test_07_blocking_at_8(capsys: pytest.CaptureFixture[str]) -> None:
    def cell(clients: int, *rates: float) -> dict[str, Any]:
        runs = [{"throughput": r} for r in rates]
        return {"server": "blocking", "clients": clients, "served": 1, "runs": runs,
                "throughput": sorted(rates)[len(rates) // 2]}  # fmt: skip

    results = [cell(1, 8_000.0, 10_000.0, 12_000.0), cell(8, 9_000.0, 9_500.0, 14_000.0)]
    exercises.check_07_blocking_at_8(*solutions.blocking_at_8(results), results)
    assert verdict(capsys) == "Exercise 1: solved"
    exercises.check_07_blocking_at_8(8 * 10_000.0, 8, results)
    assert verdict(capsys) == "Exercise 1: 1/3 checks pass"
    exercises.check_07_blocking_at_8(None, None, results)
    assert "not attempted yet" in capsys.readouterr().out


def test_07_littles_law(capsys: pytest.CaptureFixture[str]) -> None:
    run = reference_run()
    cells = [c for name in ("echo", "slow", "connect") for c in run[name]["results"]]
    for c in cells:  # made-up cells obeying Little's law, some with starved clients
        c["served"] = 1 if c["server"] == "blocking" else c["clients"]
        c["throughput"] = 1000.0 * c["served"]
        c["mean_ms"] = 1.0
    exercises.check_07_littles_law(solutions.mean_latency_ms, cells)
    assert verdict(capsys) == "Exercise 2: solved"
    exercises.check_07_littles_law(lambda c: c["clients"] / c["throughput"] * 1000, cells)
    assert verdict(capsys) == "Exercise 2: 3/4 checks pass"

    def stub(cell: dict[str, Any]) -> float:
        raise NotImplementedError

    exercises.check_07_littles_law(stub, cells)
    assert "not attempted yet" in capsys.readouterr().out


def test_07_slow_request(capsys: pytest.CaptureFixture[str]) -> None:
    exercises.check_07_slow_request(solutions.slow_request)
    assert verdict(capsys) == "Exercise 3: solved"

    def wall_clock(ms: float) -> None:
        deadline = time.perf_counter() + ms / 1000
        while time.perf_counter() < deadline:
            pass

    exercises.check_07_slow_request(wall_clock)  # alone, a busy machine may fail it too
    assert "[ ] 6 at once" in capsys.readouterr().out

    def stub(ms: float) -> None:
        raise NotImplementedError

    exercises.check_07_slow_request(stub)
    out, err = capsys.readouterr()
    assert "not attempted yet" in out and err == ""  # nothing from the threads
