"""CPython's own ``http.server``, ``xmlrpc`` and ``wsgiref`` suites, run on minisocket.

Each suite runs in a fresh interpreter -- the one running pytest, so every session of the
matrix runs its own Python's suites -- in which ``sys.modules['socketserver']`` is
minisocket before anything imports ``socketserver``.  ``http.server``, ``xmlrpc.server``
and ``wsgiref.simple_server`` are then built on minisocket's classes, and so is every
server those suites start; the child checks that before it runs a test.

``test_xmlrpc`` takes about 28 s whichever server it runs on (nine of its tests each wait
out a 3 s timeout) and under a second of CPU.  So the suites start as soon as pytest
collects this file and run beside the other tests; each test below collects one result.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile

import pytest

SUITES = ["test_httpservers", "test_xmlrpc", "test_wsgiref"]

if importlib.util.find_spec("test.test_httpservers") is None:
    pytest.skip(
        "the interpreter has no 'test' package (Debian/Ubuntu: install libpython3-testsuite "
        "or python3.X-testsuite); CPython's suites cannot run",
        allow_module_level=True,
    )

CHILD = """
import json, sys, unittest

import minisocket

sys.modules["socketserver"] = minisocket
import http.server, xmlrpc.server, wsgiref.simple_server

for server in (http.server.HTTPServer, http.server.ThreadingHTTPServer,
               xmlrpc.server.SimpleXMLRPCServer, wsgiref.simple_server.WSGIServer):
    assert issubclass(server, minisocket.TCPServer), server
    assert all(c.__module__ != "socketserver" for c in server.__mro__), server.__mro__

suite = unittest.defaultTestLoader.loadTestsFromName("test." + sys.argv[1])
result = unittest.TextTestRunner(stream=sys.stderr, verbosity=1).run(suite)
print(json.dumps({
    "run": result.testsRun,
    "skipped": len(result.skipped),
    "failures": [test.id() for test, _ in result.failures],
    "errors": [test.id() for test, _ in result.errors],
    "unexpected_successes": [test.id() for test in result.unexpectedSuccesses],
}))
"""


class Child:
    """One suite running in its own interpreter, its output in files (no pipe to fill)."""

    def __init__(self, suite: str) -> None:
        self.suite = suite
        self.workdir = tempfile.mkdtemp(prefix=f"minisocket-{suite}-")
        self.stdout = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop())
        self.stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, suite],
            cwd=self.workdir,
            stdout=self.stdout,
            stderr=self.stderr,
            text=True,
        )

    def wait(self, timeout: float) -> tuple[int, str, str]:
        code = self.process.wait(timeout)
        self.stdout.seek(0)
        self.stderr.seek(0)
        return code, self.stdout.read(), self.stderr.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stdout.close()
        self.stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


CHILDREN = {suite: Child(suite) for suite in SUITES}
for _child in CHILDREN.values():
    atexit.register(_child.stop)  # also when these tests are deselected


@pytest.mark.timeout(300)
@pytest.mark.parametrize("suite", SUITES)
def test_cpython_suite_passes_on_minisocket(suite: str) -> None:
    child = CHILDREN[suite]
    try:
        code, stdout, stderr = child.wait(timeout=240)
    finally:
        child.stop()
    lines = stdout.strip().splitlines()
    assert code == 0 and lines, f"{suite} did not finish:\n{stderr[-4000:]}"
    result = json.loads(lines[-1])
    failed = result["failures"] + result["errors"] + result["unexpected_successes"]
    assert not failed, f"{suite} on minisocket: {failed}\n{stderr[-6000:]}"
    assert result["run"] > result["skipped"], f"{suite}: every test was skipped"
