"""Grade a socketserver of your own with CPython's ``test_socketserver``.

``grade(path)`` runs the suite of the running interpreter (or of ``python=``) against the
module at *path*, in child processes (``_runner.py``), level by level:

    level 1  the tests that need layer 01 only (or nothing)
    level 2  ... layers 01-02
    ...
    level 5  ... layers 01-05
    other    tests this map does not know (a newer suite's): run after level 5

A level is graded once every level before it passes; until then its tests are
*locked*.  So a reader who has written the listening socket and the loop sees levels 1
and 2 green while the pipeline is still ``NotImplementedError``.

Each test gets ``test_timeout`` seconds.  A test that takes longer is reported as a
*hang*: the child's whole process group is killed (with whatever it was listening on)
and a new child runs the level's remaining tests.  A test whose module raised
``NotImplementedError`` -- in the test or in a thread it started -- is *not yet*; the
grader stops waiting for it shortly after the stub raised.
"""

from __future__ import annotations

import ast
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "LAYERS",
    "TESTS",
    "Check",
    "Outcome",
    "Report",
    "grade",
    "layer_map",
    "stub_sections",
]

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "_runner.py"
SKELETON = HERE / "skeleton.py"

LAYERS = {
    1: "01 · The listening socket",
    2: "02 · The select loop",
    3: "03 · The request pipeline",
    4: "04 · Request handlers",
    5: "05 · Mix-ins",
}
OTHER = 6  # the level of tests the map does not know

STUB_GRACE = 0.5  # seconds a test may go on after it called a part not written yet
STARTUP_TIMEOUT = 30.0  # seconds a child may take to import the suite and the module


@dataclass(frozen=True)
class Check:
    """What one CPython test needs: the layers it exercises, and what to reread."""

    needs: tuple[int, ...]
    what: str
    reread: str

    @property
    def level(self) -> int:
        return max(self.needs, default=1)


# Every test of CPython 3.11-3.13's test_socketserver, by the layers it cannot pass
# without.  All of them build a server (01); serve_forever and handle_request are the
# loop (02); a request that reaches a handler needs the pipeline (03) and the handler
# (04); a threading or forking class needs its mix-in (05).
_1, _2, _3, _4, _5 = (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), (1, 2, 3, 4, 5)
_THREADS, _FORKS = "05 §2 threads", "05 §3 processes"
TESTS: dict[str, Check] = {
    "MiscTestCase.test_all": Check((), "__all__ is the public names", "the skeleton's docstring"),
    "SocketServerTest.test_tcpserver_bind_leak": Check(
        _1, "1,024 failed binds leak nothing", "01 §6 TCPServer.__init__"
    ),
    "SocketServerTest.test_context_manager": Check(
        _1, "`with` closes the socket", "01 §6 TCPServer.__init__"
    ),
    "SocketServerTest.test_shutdown": Check(
        _2, "shutdown() stops 20 loops", "02 §4 how shutdown() waits"
    ),
    "MiscTestCase.test_shutdown_request_called_if_verify_request_false": Check(
        _3, "a refused request is shut down", "03 §2 verify_request"
    ),
    "ErrorHandlerTest.test_sync_handled": Check(
        _4, "ValueError → handle_error", "03 §4 handle_error"
    ),
    "ErrorHandlerTest.test_sync_not_handled": Check(
        _4, "SystemExit is not handled", "03 §1 the pipeline"
    ),
    "SocketWriterTest.test_basics": Check(_4, "wfile is a file on the socket", "04 §3 wfile"),
    "SocketWriterTest.test_write": Check(_4, "wfile.write sends all, at once", "04 §3 wfile"),
    "SocketServerTest.test_TCPServer": Check(
        _4, "echo through TCPServer", "04 §3 StreamRequestHandler"
    ),
    "SocketServerTest.test_UnixStreamServer": Check(
        _4, "echo through UnixStreamServer", "04 §3 StreamRequestHandler"
    ),
    "SocketServerTest.test_UDPServer": Check(
        _4, "echo through UDPServer", "04 §4 DatagramRequestHandler"
    ),
    "SocketServerTest.test_UnixDatagramServer": Check(
        _4, "echo through UnixDatagramServer", "04 §4 DatagramRequestHandler"
    ),
    "SocketServerTest.test_close_immediately": Check(
        (1, 5), "close a threading server at once", _THREADS
    ),
    "MiscTestCase.test_threads_reaped": Check(_5, "finished threads leave _threads", _THREADS),
    "ErrorHandlerTest.test_threading_handled": Check(
        _5, "ValueError in a thread → handle_error", _THREADS
    ),
    "ErrorHandlerTest.test_threading_not_handled": Check(
        _5, "SystemExit in a thread: not handled", _THREADS
    ),
    "SocketServerTest.test_ThreadingTCPServer": Check(
        _5, "echo through ThreadingTCPServer", _THREADS
    ),
    "SocketServerTest.test_ThreadingUDPServer": Check(
        _5, "echo through ThreadingUDPServer", _THREADS
    ),
    "SocketServerTest.test_ThreadingUnixStreamServer": Check(
        _5, "echo through ThreadingUnixStreamServer", _THREADS
    ),
    "SocketServerTest.test_ThreadingUnixDatagramServer": Check(
        _5, "echo through ThreadingUnixDatagramServer", _THREADS
    ),
    "ErrorHandlerTest.test_forking_handled": Check(
        _5, "ValueError in a child → handle_error", _FORKS
    ),
    "ErrorHandlerTest.test_forking_not_handled": Check(
        _5, "SystemExit in a child: not handled", _FORKS
    ),
    "SocketServerTest.test_ForkingTCPServer": Check(_5, "echo through ForkingTCPServer", _FORKS),
    "SocketServerTest.test_ForkingUDPServer": Check(_5, "echo through ForkingUDPServer", _FORKS),
    "SocketServerTest.test_ForkingUnixStreamServer": Check(
        _5, "echo through ForkingUnixStreamServer", _FORKS
    ),
    "SocketServerTest.test_ForkingUnixDatagramServer": Check(
        _5, "echo through ForkingUnixDatagramServer", _FORKS
    ),
}


def stub_sections(path: Path = SKELETON) -> dict[str, str]:
    """``{qualified name: "01 §6 TCPServer.__init__"}`` for each part the skeleton
    leaves to write, read from the last line of its docstring."""
    sections = {}
    for qualname, node in _functions(ast.parse(path.read_text())):
        doc = ast.get_docstring(node) or ""
        found = re.search(r"Notebook (\d\d), §(\d+): (.+?)\.?\s*$", doc)
        if found:
            number, section, title = found.groups()
            sections[qualname] = f"{number} §{section} {title.replace('`', '')}"
    return sections


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef]]:
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    yield f"{node.name}.{item.name}", item
        elif isinstance(node, ast.FunctionDef):
            yield node.name, node


@dataclass(frozen=True)
class Outcome:
    """One test's result.  ``status``: pass, fail, not yet, hang, skip, locked."""

    test: str
    level: int
    status: str
    detail: str = ""
    reread: str = ""

    @property
    def layer(self) -> str:
        """The layer ``reread`` points at ("01".."05"), or "" if none."""
        return self.reread[:2] if self.reread[:2].isdigit() else ""


@dataclass
class Report:
    """The grader's verdict; ``str(report)`` is the table."""

    module: str
    python: str
    outcomes: list[Outcome] = field(default_factory=list)
    problem: str = ""  # why nothing could be graded (no test package)
    seconds: float = 0.0
    test_timeout: float = 0.0
    pids: list[int] = field(default_factory=list)  # each child's, its process group's id

    def level(self, number: int) -> list[Outcome]:
        return [o for o in self.outcomes if o.level == number]

    def passed(self) -> list[str]:
        return [o.test for o in self.outcomes if o.status == "pass"]

    def problems(self) -> list[Outcome]:
        """The tests that ran and did not pass or skip."""
        return [o for o in self.outcomes if o.status in ("fail", "not yet", "hang")]

    def still_running(self) -> list[int]:
        """The processes still alive in the process groups the grader started (none,
        once ``grade`` has returned)."""
        return _living(set(self.pids))

    def __str__(self) -> str:
        if self.problem:
            return self.problem
        lines = []
        for number in sorted({o.level for o in self.outcomes}):
            outcomes = self.level(number)
            title = f"level {number}: {LAYERS[number]}" if number in LAYERS else "other tests"
            if all(o.status == "locked" for o in outcomes):
                lines.append(f"{title} — locked ({_count(len(outcomes))})")
                continue
            passed = sum(o.status in ("pass", "skip") for o in outcomes)
            lines.append(f"{title} — {passed} of {len(outcomes)} pass")
            for o in outcomes:
                lines.append(f"  {o.status:<8} {o.test}")
                if o.status not in ("pass", "locked"):
                    todo = "write it" if o.status == "not yet" else "reread"
                    more = f" → {todo}: {o.reread}" if o.reread else ""
                    lines.append(f"           {o.detail}{more}")
        total = len(self.outcomes)
        lines.append(f"{len(self.passed())} of {total} tests pass")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Report {len(self.passed())} of {len(self.outcomes)} pass>"


def _living(groups: set[int]) -> list[int]:
    """The processes, zombies aside, whose process group is one of *groups*."""
    proc = Path("/proc")
    if not proc.is_dir():  # no /proc: ask the kernel, zombies included
        return [pgid for pgid in groups if _group_exists(pgid)]
    living = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # the process has just gone
        if int(group) in groups and state != "Z":  # a zombie holds no socket
            living.append(int(stat.parent.name))
    return living


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _count(n: int) -> str:
    return f"{n} test" if n == 1 else f"{n} tests"


def layer_map() -> str:
    """The map, as a table: each level's tests, the layers they need, what they check."""
    lines = []
    for number, title in LAYERS.items():
        lines.append(f"level {number}: {title}")
        for test, check in TESTS.items():
            if check.level == number:
                lines.append(f"  {_needs(check.needs):<7}{test.split('.')[1]:<54}{check.what}")
    lines.append("other: tests this map does not know (a newer suite's), graded after level 5")
    return "\n".join(lines)


def _needs(layers: tuple[int, ...]) -> str:
    if not layers:
        return "-"
    if layers == tuple(range(layers[0], layers[-1] + 1)) and len(layers) > 1:
        return f"{layers[0]:02}-{layers[-1]:02}"
    return "+".join(f"{n:02}" for n in layers)


def grade(
    module: str | os.PathLike[str],
    *,
    python: str | None = None,
    test_timeout: float = 10.0,
    all_levels: bool = False,
) -> Report:
    """Run CPython's test_socketserver against *module*; return the report.

    *python*: the interpreter whose suite runs (default: this one).  *all_levels*: grade
    every level even when an earlier one fails.
    """
    started = time.monotonic()
    path = Path(module).resolve()
    python = python or sys.executable
    report = Report(str(module), python, test_timeout=test_timeout)
    workdir = Path(tempfile.mkdtemp(prefix="capstone-"))
    try:
        listing = _Child(python, None, [], workdir, test_timeout).run()
        report.pids.append(listing.pid)
        if listing.problem or not listing.listed:
            report.problem = listing.problem or f"could not list the tests ({listing.exit})"
            return report
        by_level: dict[int, list[str]] = {}
        for test in listing.listed:
            check = TESTS.get(test)
            by_level.setdefault(check.level if check else OTHER, []).append(test)
        locked = False
        for number in sorted(by_level):
            tests = by_level[number]
            if locked:
                report.outcomes += [Outcome(t, number, "locked") for t in tests]
                continue
            outcomes = _grade_level(python, path, tests, number, workdir, test_timeout, report)
            report.outcomes += outcomes
            if not all_levels and any(o.status not in ("pass", "skip") for o in outcomes):
                locked = True
        return report
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        report.seconds = time.monotonic() - started


def _grade_level(
    python: str,
    path: Path,
    tests: list[str],
    level: int,
    workdir: Path,
    test_timeout: float,
    report: Report,
) -> list[Outcome]:
    results: dict[str, Outcome] = {}
    stubs = stub_sections()

    def outcome(test: str, status: str, detail: str, where: str = "") -> Outcome:
        check = TESTS.get(test)
        reread = stubs.get(where) or (check.reread if check else "")
        return Outcome(test, level, status, detail, reread if status != "pass" else "")

    remaining = list(tests)
    while remaining:
        child = _Child(python, path, remaining, workdir, test_timeout)
        child.run()
        report.pids.append(child.pid)
        for test, (status, detail, where) in child.ended.items():
            results[test] = outcome(test, status, detail, where)
        if child.problem:  # the module does not import: nothing in it can pass
            for test in remaining:
                results.setdefault(test, outcome(test, "fail", child.problem))
            break
        if child.stopped is not None:
            test, status, detail, where = child.stopped
            results[test] = outcome(test, status, detail, where)
        elif not child.done:
            test = child.current or next(t for t in remaining if t not in results)
            last = child.output_tail()
            why = f"the test process died ({child.exit})" + (f": {last}" if last else "")
            results[test] = outcome(test, "fail", why)
        remaining = [t for t in remaining if t not in results]
        if child.done:
            for test in remaining:
                results[test] = outcome(test, "fail", "not run: a class set-up failed?")
            break
    return [results[t] for t in tests]


class _Child:
    """One run of ``_runner.py`` in its own process group, read with deadlines."""

    def __init__(
        self,
        python: str,
        module: Path | None,
        tests: list[str],
        workdir: Path,
        test_timeout: float,
    ) -> None:
        self.python, self.module, self.tests = python, module, tests
        self.workdir, self.test_timeout = workdir, test_timeout
        self.listed: list[str] = []  # the suite's tests, when listing (module None)
        self.ended: dict[str, tuple[str, str, str]] = {}  # test: (status, detail, where)
        self.current = ""  # the test started and not ended
        self.stopped: tuple[str, str, str, str] | None = None  # killed during a test
        self.problem = ""  # nothing could run: no suite, the module does not import...
        self.done = False
        self.exit = ""
        self.pid = 0

    def output_tail(self) -> str:
        """The last line the child printed (its stderr: a traceback's last line)."""
        try:
            lines = (self.workdir / "child-output.txt").read_text(errors="replace").split("\n")
        except OSError:
            return ""
        return next((line.strip() for line in reversed(lines) if line.strip()), "")

    def run(self) -> _Child:
        read_end, write_end = os.pipe()
        command = [self.python, "-I", str(RUNNER), "--fd", str(write_end)]
        if self.module is not None:
            command += ["--module", str(self.module), *self.tests]
        env = dict(os.environ, TMPDIR=str(self.workdir))
        try:
            with open(self.workdir / "child-output.txt", "wb") as output:
                process = subprocess.Popen(
                    command,
                    cwd=self.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    pass_fds=(write_end,),
                    start_new_session=True,  # its own process group, to kill as one
                )
        finally:
            os.close(write_end)
        self.pid = process.pid
        try:
            self._read(read_end)
        finally:
            os.close(read_end)
            # Kill the group before reaping its leader, so that the group's id cannot be
            # reused meanwhile: stray children of the tests die too, and their sockets
            # close with them.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = process.wait()
            # SIGKILL is sent; wait (briefly) until every process of the group is gone.
            deadline = time.monotonic() + 2.0
            while _living({process.pid}) and time.monotonic() < deadline:
                time.sleep(0.01)
        self.exit = f"exit status {code}" if code >= 0 else f"signal {-code}"
        return self

    def _deadline(self, started: float, test_started: float, stub_at: float) -> float:
        if not self.current:
            return started + STARTUP_TIMEOUT
        deadline = test_started + self.test_timeout
        return min(deadline, stub_at + STUB_GRACE) if stub_at else deadline

    def _read(self, fd: int) -> None:
        started = time.monotonic()
        test_started = stub_at = 0.0
        stub = ""
        pending = b""
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                deadline = self._deadline(started, test_started, stub_at)
                now = time.monotonic()
                if now >= deadline:
                    if self.current and stub:
                        why = f"{stub} is not written yet"
                        self.stopped = (self.current, "not yet", why, stub)
                    elif self.current:
                        why = f"no result after {self.test_timeout:g} s: stopped"
                        self.stopped = (self.current, "hang", why, "")
                    else:
                        self.problem = "the test process did not start in time"
                    return
                if not selector.select(deadline - now):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    return  # the child exited, or died
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    event = json.loads(line)
                    kind = event["event"]
                    if kind == "start":
                        self.current, test_started = event["test"], time.monotonic()
                        stub, stub_at = "", 0.0
                    elif kind == "stub" and event["test"] == self.current:
                        stub, stub_at = event["where"], time.monotonic()
                    elif kind == "end":
                        status, detail, where = event["status"], event["detail"], event["where"]
                        self.ended[event["test"]] = (status, detail, where)
                        self.current = ""
                    elif kind == "tests":
                        self.listed = event["tests"]
                    elif kind == "no-suite":
                        self.problem = event["detail"]
                    elif kind == "module-error":
                        self.problem = f"the module does not import: {event['detail']}"
                    elif kind == "done":
                        self.done = True
                        return
