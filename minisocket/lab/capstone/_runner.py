"""The grader's child process: CPython's ``test_socketserver`` against one module.

Run by ``grader.py`` as ``python -I _runner.py --fd N [--module PATH] [TEST ...]``, in a
fresh working directory and process group of its own.  Standalone on purpose (the
standard library only), so it runs under any interpreter, minisocket installed or not.

It loads the module at PATH under the name ``socketserver`` -- so the suite's
``import socketserver`` finds it, and the classes' ``__module__`` is what ``test_all``
expects -- then runs the named tests (``Class.test_method``) in order.  Without
``--module`` it lists the suite's tests instead.  It reports on file descriptor N, one
JSON object a line:

    {"event": "tests", "tests": [...]}                       the listing
    {"event": "start", "test": T}
    {"event": "stub", "test": T, "where": Q}                 T called a part not written
    {"event": "end", "test": T, "status": S, "detail": D, "where": Q}
    {"event": "done"}
    {"event": "no-suite", "detail": D} / {"event": "module-error", "detail": D}

A part not written is a function whose body is only ``raise NotImplementedError``: each
is wrapped to report its first call during a test, from whichever thread or forked
child calls it -- the pipeline may well catch the exception and carry on.  ``status`` is
``pass``, ``fail``, ``skip`` or ``not yet`` (the test called a part not written, or the
module raised ``NotImplementedError``); ``where`` is the qualified name of that part,
else of the innermost function of the module in the traceback, or ``""``.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib.util
import json
import os
import sys
import types
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

SUITE = "test.test_socketserver"
ExcInfo = tuple[type[BaseException], BaseException, types.TracebackType | None]


class Reporter:
    """Writes events; silent in any process but the one that created it (a forked child
    of a broken ForkingMixIn that returns into the test runner must not report)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pid = os.getpid()

    def __call__(self, event: str, **fields: str | list[str]) -> None:
        if os.getpid() != self.pid and event != "stub":
            os._exit(70)  # a stray child: never run the rest of the suite twice
        self.stream.write(json.dumps({"event": event, **fields}) + "\n")
        self.stream.flush()


def first_line(exc_type: type[BaseException], exc: BaseException) -> str:
    """``Type: the message's first line`` (a SyntaxError's message names file and line)."""
    message = str(exc).strip().splitlines()
    return f"{exc_type.__name__}: {message[0]}" if message else exc_type.__name__


def classify(err: ExcInfo, module_file: str) -> tuple[str, str, str]:
    """``(status, detail, where)`` for an exception a test raised."""
    exc_type, exc, tb = err
    where, innermost = "", ""
    while tb is not None:
        code = tb.tb_frame.f_code
        innermost = code.co_filename
        if code.co_filename == module_file:
            where = code.co_qualname
        tb = tb.tb_next
    if issubclass(exc_type, NotImplementedError) and innermost == module_file:
        return "not yet", f"{where} is not written yet", where
    return "fail", first_line(exc_type, exc), where


def test_name(test: unittest.TestCase) -> str:
    return f"{type(test).__name__}.{test._testMethodName}"


class Result(unittest.TestResult):
    """Streams one ``start`` and one ``end`` event per test."""

    def __init__(self, report: Reporter, module_file: str) -> None:
        super().__init__()
        self.report = report
        self.module_file = module_file
        self.current = ""
        self.outcome: tuple[str, str, str] = ("pass", "", "")
        self.stub = ""  # a stub that raised in another thread during this test

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self.current, self.outcome, self.stub = test_name(test), ("pass", "", ""), ""
        self.report("start", test=self.current)

    def stub_called(self, where: str) -> None:
        if self.current and not self.stub:
            self.stub = where
            self.report("stub", test=self.current, where=where)

    def _set(self, outcome: tuple[str, str, str]) -> None:
        if self.outcome[0] == "pass":  # keep the first problem
            self.outcome = outcome

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._set(classify(err, self.module_file))

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        if isinstance(test, unittest.TestCase):
            self._set(classify(err, self.module_file))
        # otherwise a class or module fixture failed: its tests never start, and the
        # grader reports them as not run.

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._set(("skip", reason, ""))

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._set(classify(err, self.module_file))

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._set(("fail", "unexpected success", ""))

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        status, detail, where = self.outcome
        if self.stub and status != "skip":
            status, detail, where = "not yet", f"{self.stub} is not written yet", self.stub
        self.report("end", test=self.current, status=status, detail=detail, where=where)
        self.current = ""


def stubs(module: types.ModuleType, path: str) -> list[tuple[Any, str]]:
    """``(class or module, name)`` of each function whose whole body (after its
    docstring) is ``raise NotImplementedError``: the parts still to write."""
    found: list[tuple[Any, str]] = []
    for node in ast.parse(Path(path).read_text()).body:
        if isinstance(node, ast.ClassDef) and hasattr(module, node.name):
            owner = getattr(module, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and _is_stub(item):
                    found.append((owner, item.name))
        elif isinstance(node, ast.FunctionDef) and _is_stub(node):
            found.append((module, node.name))
    return found


def _is_stub(node: ast.FunctionDef) -> bool:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc
    exc = exc.func if isinstance(exc, ast.Call) else exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _reporting(function: Callable[..., Any], result: Result) -> Callable[..., Any]:
    """*function*, telling *result* it was called (from any thread or forked child)."""

    @functools.wraps(function)
    def stub(*args: Any, **kwargs: Any) -> Any:
        result.stub_called(function.__qualname__)
        return function(*args, **kwargs)

    return stub


def load_as_socketserver(path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("socketserver", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["socketserver"] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--module")
    parser.add_argument("tests", nargs="*")
    args = parser.parse_args(argv)
    report = Reporter(os.fdopen(args.fd, "w"))
    sys.dont_write_bytecode = True  # leave no __pycache__ beside the reader's module

    try:
        support = importlib.import_module("test.support")
        found = importlib.util.find_spec(SUITE) is not None
    except ImportError:
        found = False
    if not found:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        report(
            "no-suite",
            detail=f"this Python ({sys.executable}) has no {SUITE}: CPython's test package "
            f"is not installed (Debian/Ubuntu: apt-get install libpython{version}-testsuite)",
        )
        return 0

    if args.module is None:
        suite_module = importlib.import_module(SUITE)
        loaded = unittest.defaultTestLoader.loadTestsFromModule(suite_module)
        report("tests", tests=[test_name(t) for t in _flatten(loaded)])
        return 0

    module_file = os.path.abspath(args.module)
    try:
        module = load_as_socketserver(module_file)
        suite_module = importlib.import_module(SUITE)
    except BaseException as exc:  # a SyntaxError, a NameError at import, a SystemExit...
        report("module-error", detail=first_line(type(exc), exc))
        return 0
    # regrtest turns chatter off; run directly, test.support defaults to verbose.
    for chatty in (support, suite_module):
        vars(chatty)["verbose"] = False

    result = Result(report, module_file)
    for owner, name in stubs(module, module_file):
        setattr(owner, name, _reporting(getattr(owner, name), result))
    cases = []
    for name in args.tests:
        class_name, method = name.split(".", 1)
        cases.append(getattr(suite_module, class_name)(method))
    unittest.TestSuite(cases).run(result)
    report("done")
    return 0


def _flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    cases: list[unittest.TestCase] = []
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            cases.extend(_flatten(item))
        else:
            cases.append(item)
    return cases


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Threads a broken module left running must not keep this process alive.
    os._exit(status)
