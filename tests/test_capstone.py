"""The capstone (notebook 07): the skeleton, the reference solution, and the grader.

Everything goes through what a reader sees: the report ``grade()`` returns and the table
it prints.  Every wait is bounded by the grader's own per-test time limit.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import time
import tokenize
from collections.abc import Callable
from pathlib import Path

import pytest

from minisocket.lab import capstone
from minisocket.lab.capstone import grader

ROOT = Path(__file__).resolve().parent.parent
try:
    SUITE_MISSING = importlib.util.find_spec("test.test_socketserver") is None
except ImportError:
    SUITE_MISSING = True
pytestmark = pytest.mark.skipif(
    SUITE_MISSING,
    reason="this Python has no test.test_socketserver (Debian/Ubuntu: libpython3.X-testsuite)",
)

SKELETON_TABLE = """\
level 1: 01 · The listening socket — 1 of 3 pass
  pass     MiscTestCase.test_all
  not yet  SocketServerTest.test_context_manager
           _StreamSocket.__init__ is not written yet → write it: 01 §6 TCPServer.__init__
  not yet  SocketServerTest.test_tcpserver_bind_leak
           _StreamSocket.__init__ is not written yet → write it: 01 §6 TCPServer.__init__
level 2: 02 · The select loop — locked (1 test)
level 3: 03 · The request pipeline — locked (1 test)
level 4: 04 · Request handlers — locked (8 tests)
level 5: 05 · Mix-ins — locked (14 tests)
1 of 27 tests pass"""


def statuses(report: capstone.Report) -> dict[str, str]:
    return {o.test: o.status for o in report.outcomes}


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- the reference solution and the skeleton -----------------------------------------


def test_the_reference_passes_every_test_of_the_suite() -> None:
    report = capstone.grade(capstone.REFERENCE)
    assert report.problems() == []
    assert set(statuses(report).values()) == {"pass"}
    assert len(report.outcomes) >= len(capstone.TESTS)
    assert str(report).endswith(f"{len(report.outcomes)} of {len(report.outcomes)} tests pass")


def test_the_unfilled_skeleton_scores_test_all_and_locks_the_rest() -> None:
    report = capstone.grade(capstone.SKELETON)
    assert str(report) == SKELETON_TABLE


@pytest.mark.parametrize("layers", range(6))
def test_levels_unlock_in_order_as_layers_are_written(layers: int, tmp_path: Path) -> None:
    module = capstone.filled(layers, tmp_path / "partial.py")
    report = capstone.grade(module)
    for o in report.outcomes:
        if o.level <= layers or not capstone.TESTS[o.test].needs:
            assert o.status == "pass", (o, layers)
        elif o.level == layers + 1:
            # the first level not written: every test there needs a part still to write
            assert o.status == "not yet" and o.layer == f"{layers + 1:02}", o
        else:
            assert o.status == "locked", o


def test_after_the_socket_and_the_loop_levels_1_and_2_are_green(tmp_path: Path) -> None:
    report = capstone.grade(capstone.filled(2, tmp_path / "two.py"))
    table = str(report)
    assert "level 1: 01 · The listening socket — 3 of 3 pass" in table
    assert "level 2: 02 · The select loop — 1 of 1 pass" in table
    assert "BaseServer._handle_request_noblock is not written yet" in table


def test_all_levels_grades_past_a_failing_level() -> None:
    report = capstone.grade(capstone.SKELETON, all_levels=True)
    assert "locked" not in statuses(report).values()
    assert statuses(report)["MiscTestCase.test_all"] == "pass"
    assert {o.status for o in report.problems()} == {"not yet"}


# -- broken solutions: the grader names the layer ------------------------------------


def test_a_refused_request_left_open_is_named_as_the_pipeline(tmp_path: Path) -> None:
    module = capstone.broken("refused-request-left-open", tmp_path / "refused.py")
    report = capstone.grade(module)
    [problem] = report.problems()
    assert problem.test == "MiscTestCase.test_shutdown_request_called_if_verify_request_false"
    assert (problem.status, problem.layer, problem.detail) == (
        "fail",
        "03",
        "AssertionError: 0 != 1",
    )
    assert "→ reread: 03 §2 verify_request" in str(report)
    assert [o.level for o in report.outcomes if o.status == "pass"] == [1, 1, 1, 2]
    assert {o.level for o in report.outcomes if o.status == "locked"} == {4, 5}

    # Graded past it, every other test passes: the bug is in that layer only.
    everything = capstone.grade(module, all_levels=True)
    assert [o.test for o in everything.problems()] == [problem.test]


def test_a_shutdown_request_that_never_closes_passes_the_suite(tmp_path: Path) -> None:
    """What CPython's suite cannot see: the garbage collector closes the socket."""
    module = capstone.broken("shutdown-request-never-closes", tmp_path / "leaky.py")
    report = capstone.grade(module)
    assert report.problems() == []


def _group_members(pgids: set[int]) -> list[int]:
    """Living (not zombie) processes in any of the process groups *pgids*."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) in pgids and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _our_sockets() -> set[str]:
    """The socket inodes held by this process and its descendants."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    ours, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in ours} - ours
        ours |= more
        grew = bool(more)
    inodes = set()
    for pid in ours:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:"):
                    inodes.add(target)
        except OSError:
            continue
    return inodes


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs Linux's /proc")
def test_a_hang_is_reported_as_a_hang_and_leaves_nothing_running(tmp_path: Path) -> None:
    module = capstone.broken("loop-ignores-shutdown", tmp_path / "hangs.py")
    sockets_before = _our_sockets()
    report = capstone.grade(module, test_timeout=2.0)
    [problem] = report.problems()
    assert (problem.test, problem.status, problem.layer) == (
        "SocketServerTest.test_shutdown",
        "hang",
        "02",
    )
    assert "no result after 2 s: stopped → reread: 02 §4" in str(report)
    assert report.seconds < 30
    # Every child's process group was killed: no process, so no socket, is left.
    assert wait_until(lambda: _group_members(set(report.pids)) == []), "processes left"
    assert report.still_running() == []
    assert _our_sockets() == sockets_before
    assert not list(tmp_path.glob("__pycache__"))


def test_a_module_that_does_not_import_fails_level_1(tmp_path: Path) -> None:
    module = tmp_path / "typo.py"
    module.write_text("class TCPServer(:\n    pass\n")
    report = capstone.grade(module)
    level_1 = report.level(1)
    assert {o.status for o in level_1} == {"fail"}
    assert all(o.detail.startswith("the module does not import: SyntaxError") for o in level_1)
    assert {o.status for o in report.outcomes if o.level > 1} == {"locked"}


def test_a_stray_child_that_returns_into_the_runner_is_stopped(tmp_path: Path) -> None:
    """A forked child that does not exit must not run the rest of the suite a second time."""
    source = capstone.REFERENCE.read_text()
    old = "            finally:\n                os._exit(status)\n"
    assert source.count(old) == 1
    module = tmp_path / "no_exit.py"
    module.write_text(source.replace(old, "            finally:\n                pass\n"))
    report = capstone.grade(module, test_timeout=1.5)
    forking = [o for o in report.outcomes if "orking" in o.test]
    assert forking and all(o.status in ("fail", "hang") for o in forking)
    assert {o.status for o in report.outcomes if "orking" not in o.test} == {"pass"}
    assert wait_until(lambda: _group_members(set(report.pids)) == []), "processes left"


def test_unknown_tests_are_graded_as_other(monkeypatch: pytest.MonkeyPatch) -> None:
    known = dict(capstone.TESTS)
    del known["SocketWriterTest.test_write"]
    known["SomeFutureTest.test_not_in_this_suite"] = capstone.Check((1,), "-", "-")
    monkeypatch.setattr(grader, "TESTS", known)
    report = capstone.grade(capstone.REFERENCE)
    [other] = [o for o in report.outcomes if o.level == grader.OTHER]
    assert (other.test, other.status) == ("SocketWriterTest.test_write", "pass")
    assert "other tests — 1 of 1 pass" in str(report)
    assert "SomeFutureTest" not in str(report)


def test_without_the_test_package_the_grader_says_so(tmp_path: Path) -> None:
    fake = tmp_path / "python-without-tests"
    hide = (
        "import runpy, sys; sys.modules['test.support'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    fake.write_text(f'#!/bin/sh\nshift\nexec "{sys.executable}" -I -c "{hide}" "$@"\n')
    fake.chmod(0o755)
    report = capstone.grade(capstone.REFERENCE, python=str(fake))
    assert report.outcomes == []
    assert "has no test.test_socketserver" in str(report)
    assert "testsuite" in str(report)


# -- other interpreters ----------------------------------------------------------------


def _interpreter(version: str) -> str | None:
    candidates = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python"))
    candidates += [Path(p) for p in [shutil.which(f"python{version}")] if p]
    for candidate in candidates:
        try:
            found = subprocess.run(
                [str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if found == version:
            return str(candidate)
    return None


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_the_reference_passes_on_each_python(version: str) -> None:
    python = _interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine")
    report = capstone.grade(capstone.REFERENCE, python=python)
    if report.problem:
        pytest.skip(f"Python {version}: {report.problem}")
    assert report.problems() == [], str(report)
    assert set(statuses(report).values()) == {"pass"}
    # The tables the notebook stores are the same under every version.
    assert str(capstone.grade(capstone.SKELETON, python=python)) == SKELETON_TABLE
    assert str(report) == str(capstone.grade(capstone.REFERENCE))


# -- the files themselves -------------------------------------------------------------


def _methods(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        f"{node.name}.{item.name}"
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        for item in node.body
        if isinstance(item, ast.FunctionDef)
    ]


def test_the_reference_is_the_skeleton_filled_in(tmp_path: Path) -> None:
    assert _methods(capstone.REFERENCE) == _methods(capstone.SKELETON)
    filled = capstone.filled(5, tmp_path / "all.py")
    for part in grader.stub_sections():
        assert capstone.source(filled, part) == capstone.source(capstone.REFERENCE, part)


def test_every_part_to_write_names_a_section_of_a_layer_notebook() -> None:
    sections = grader.stub_sections()
    assert len(sections) >= 25
    notebooks = {p.name[:2] for p in (ROOT / "notebooks").glob("0[1-5]-*.ipynb")}
    for name, section in sections.items():
        assert re.fullmatch(r"0[1-5] §\d+ .+", section), (name, section)
        assert section[:2] in notebooks
    assert "0 of " in capstone.outline() and f"{len(sections)} of " in capstone.outline(
        capstone.REFERENCE
    )


def test_the_layer_map_covers_the_suite_in_order() -> None:
    report = capstone.grade(capstone.SKELETON, all_levels=True)
    assert {o.test for o in report.outcomes} == set(capstone.TESTS)
    levels = [c.level for c in capstone.TESTS.values()]
    assert levels == sorted(levels)
    table = capstone.layer_map()
    for test in capstone.TESTS:
        assert table.count(f" {test.split('.')[1]} ") == 1


@pytest.mark.parametrize("path", [capstone.SKELETON, capstone.REFERENCE], ids=lambda p: p.stem)
def test_skeleton_and_reference_stand_alone(path: Path) -> None:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "minisocket" not in imported
    assert imported <= set(sys.stdlib_module_names) | {"__future__", "_typeshed"}


def test_import_minisocket_loads_no_capstone() -> None:
    code = "import sys, minisocket; print(any('capstone' in m for m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


def code_lines(path: Path) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    text = path.read_text()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings |= set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in skip | {tokenize.ENDMARKER}:
            lines |= set(range(token.start[0], token.end[0] + 1)) - docstrings
    return len(lines)


def test_the_reference_is_smaller_than_the_stdlib() -> None:
    import socketserver

    stdlib = code_lines(Path(socketserver.__file__))  # 332 on 3.11
    assert code_lines(capstone.REFERENCE) < stdlib


# -- the reader's copy ----------------------------------------------------------------


def test_the_copy_is_made_once_and_never_overwritten(tmp_path: Path) -> None:
    mine = tmp_path / "workbench" / "my_socketserver.py"
    assert capstone.copy_skeleton(mine) == mine
    assert mine.read_text() == capstone.SKELETON.read_text()
    mine.write_text(mine.read_text() + "# my work\n")
    capstone.copy_skeleton(mine)
    assert mine.read_text().endswith("# my work\n")

    kept = capstone.start_over(mine)
    assert kept == mine.with_name("my_socketserver.old-1.py")
    assert kept.read_text().endswith("# my work\n")
    assert mine.read_text() == capstone.SKELETON.read_text()
    assert capstone.start_over(mine) == mine.with_name("my_socketserver.old-2.py")


def test_the_gitignore_keeps_the_workbench_out() -> None:
    assert "notebooks/workbench/" in (ROOT / ".gitignore").read_text().splitlines()


def test_source_prints_one_part_as_plain_text() -> None:
    text = capstone.source(capstone.SKELETON, "_StreamSocket.__init__")
    assert text.startswith("def __init__(") and text.rstrip().endswith("raise NotImplementedError")
    with pytest.raises(LookupError):
        capstone.source(capstone.SKELETON, "TCPServer.nothing")
