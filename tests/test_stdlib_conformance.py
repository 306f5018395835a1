"""CPython's own ``test.test_socketserver``, run against minisocket.

The module is loaded from the installed ``test`` package under a private name while
``sys.modules['socketserver']`` points at minisocket, so every ``socketserver.X`` it
uses is minisocket's.  Its test classes are re-exported here for pytest to collect.

One test cannot apply as written: ``MiscTestCase.test_all`` counts the names whose
``__module__`` is ``'socketserver'``, which no package of another name can satisfy.  It
is replaced by the equivalent check: minisocket exports every name of the stdlib's
``__all__``, and each is defined by minisocket.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

import minisocket


def _load_stdlib_suite() -> types.ModuleType | None:
    try:
        spec = importlib.util.find_spec("test.test_socketserver")
    except ImportError:
        spec = None
    if spec is None or spec.loader is None:
        return None
    import test.support

    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("socketserver")
    sys.modules["socketserver"] = minisocket  # type: ignore[assignment]
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["socketserver"]
        else:
            sys.modules["socketserver"] = saved
    # regrtest turns chatter off; run directly, test.support defaults to verbose.
    test.support.verbose = False
    module.verbose = False  # type: ignore[attr-defined]
    return module


_suite = _load_stdlib_suite()

if _suite is None:
    pytest.skip(
        "the interpreter has no 'test' package (Debian/Ubuntu: install libpython3-testsuite "
        "or python3.X-testsuite); the CPython conformance suite cannot run",
        allow_module_level=True,
    )

assert _suite.socketserver is minisocket, "the suite must test minisocket"

SocketServerTest = _suite.SocketServerTest
ErrorHandlerTest = _suite.ErrorHandlerTest
SocketWriterTest = _suite.SocketWriterTest


class MiscTestCase(_suite.MiscTestCase):  # type: ignore[name-defined,misc]
    def test_all(self) -> None:
        import socketserver

        missing = sorted(set(socketserver.__all__) - set(minisocket.__all__))
        self.assertEqual(missing, [])
        for name in socketserver.__all__:
            self.assertTrue(getattr(minisocket, name).__module__.startswith("minisocket."))
