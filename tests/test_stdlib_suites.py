"""CPython's own ``http.server``, ``xmlrpc`` and ``wsgiref`` suites, run on minisocket.

Each suite runs in a fresh interpreter -- the one running pytest, so every session of the
matrix runs its own Python's suites -- in which ``sys.modules['socketserver']`` is
minisocket before anything imports ``socketserver``.  ``http.server``, ``xmlrpc.server``
and ``wsgiref.simple_server`` are then built on minisocket's classes, and so is every
server those suites start; the child checks that before it runs a test.

``test_xmlrpc`` takes about 28 s whichever server it runs on: nine of its tests each wait
out a 3 s timeout.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.timeout(300)
@pytest.mark.parametrize("suite", SUITES)
def test_cpython_suite_passes_on_minisocket(suite: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, suite],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, f"{suite} did not finish:\n{done.stderr[-4000:]}"
    result = json.loads(lines[-1])
    failed = result["failures"] + result["errors"] + result["unexpected_successes"]
    assert not failed, f"{suite} on minisocket: {failed}\n{done.stderr[-6000:]}"
    assert result["run"] > result["skipped"], f"{suite}: every test was skipped"
