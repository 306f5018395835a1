"""Reference solutions to the exercises of notebook 02 (the select loop).

Try the exercises first: each notebook cell that calls ``exercises.check_02_*`` tells
you how far you got.  ``tests/test_exercises.py`` runs these answers through the same
checks.
"""

from __future__ import annotations

import threading
from typing import Any

from minisocket import ThreadingTCPServer


class StopAfterThree:
    """Exercise 1: mixed in before a ``TCPServer`` (socketserver's or minisocket's),
    ``serve_forever`` returns by itself after the third request.

    Count in ``process_request``: the loop calls it once per accepted request.  Stopping
    is the subtle part.  ``service_actions`` runs on the serving thread, and
    socketserver's ``shutdown()`` called there waits for the very loop that is waiting
    for it: a deadlock.  (minisocket notices it is on the serving thread and returns,
    which is why the obvious answer works there and only there.)  Calling ``shutdown()``
    from another thread is safe in both: it sets the flag and waits, the loop sees the
    flag at the end of this pass and returns, and the helper thread goes with it.
    """

    handled = 0
    _stopping = False

    def process_request(self, request: Any, client_address: Any) -> None:
        super().process_request(request, client_address)  # type: ignore[misc]
        self.handled += 1

    def service_actions(self) -> None:
        super().service_actions()  # type: ignore[misc]
        if self.handled >= 3 and not self._stopping:
            self._stopping = True
            threading.Thread(target=self.shutdown, daemon=True).start()  # type: ignore[attr-defined]


class RequestCounter(ThreadingTCPServer):
    """Exercise 2: count a request when it is *finished*, on the thread that served it.

    ``service_actions`` runs once per pass of the loop, not once per request: every
    ``poll_interval`` while idle, and, in a threading server, right after the request's
    thread has started -- before the request is done.  ``process_request_thread`` is the
    request thread's body: after ``super()`` returns, the handler has finished and the
    connection is shut down.  Several request threads may finish at once, hence the lock.
    """

    requests = 0
    _lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        super().process_request_thread(request, client_address)
        with self._lock:
            self.requests += 1


def serve_until_quiet(server: Any, quiet: float) -> int:
    """Exercise 3: ``handle_request()`` until none arrives for *quiet* seconds.

    ``handle_request`` waits at most ``server.timeout`` seconds and then calls
    ``handle_timeout()``; an instance attribute replaces that hook for this server only.
    """
    served = 0
    timed_out = False

    def on_timeout() -> None:
        nonlocal timed_out
        timed_out = True

    server.timeout = quiet
    server.handle_timeout = on_timeout
    while True:
        server.handle_request()
        if timed_out:
            return served
        served += 1
