"""Reference solutions to the exercises of notebook 05 (mix-ins: threads and processes).

``tests/test_exercises.py`` runs each one through its check in
:mod:`minisocket.lab.exercises`.  Try the exercises before reading on.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import minisocket

# -- Exercise 1: predict ---------------------------------------------------------------
#
# class Backwards(minisocket.TCPServer, minisocket.ThreadingMixIn): pass
#
# The MRO is Backwards -> TCPServer -> BaseServer -> ServeLoop -> ThreadingMixIn -> object:
# TCPServer and everything above it come first, so the mix-in only answers names nobody
# else defines (process_request_thread, daemon_threads, ...).  process_request is
# BaseServer's -- the synchronous one -- and server_close is TCPServer's, so requests are
# served one at a time on the serving thread, and server_close waits for nothing.

BACKWARDS_PREDICTION: dict[str, Any] = {
    "process_request": "BaseServer",
    "server_close": "TCPServer",
    "concurrent": False,
}


# -- Exercise 2: debug -------------------------------------------------------------------
#
# The handler runs in the child, a copy of the parent: ``self.server.served += 1`` changes
# the child's copy of the server, which disappears with the child.  The parent must count,
# before it forks.


class CountingForkingServer(minisocket.ForkingTCPServer):
    served = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.served += 1  # in the parent: the child's copy of the count would be lost
        super().process_request(request, client_address)


# -- Exercise 3: measure -------------------------------------------------------------------


class _Server(minisocket.ThreadingTCPServer):
    entered: threading.Event


def close_time(handler_class: type[Any], close_grace: float) -> float:
    """Seconds ``server_close()`` takes with one client's handler still running."""
    server = _Server(("127.0.0.1", 0), handler_class)
    server.close_grace = close_grace
    server.entered = threading.Event()
    loop = threading.Thread(target=server.serve_forever, args=(0.05,))
    loop.start()
    with socket.create_connection(server.server_address, timeout=5):
        server.entered.wait(5)
        server.shutdown()
        loop.join()
        started = time.monotonic()
        server.server_close()
        return time.monotonic() - started


# An idle client: close_grace, then its connection is shut down and its handler returns.
# A handler stuck off the socket: close_grace, the shutdown does not wake it, a second
# close_grace, and server_close logs it and returns.
MULTIPLE_OF_CLOSE_GRACE: dict[str, Any] = {"idle client": 1, "stuck handler": 2}
