"""Reference solutions to notebook 03's exercises (03-request-pipeline.ipynb).

Try the exercises first: the notebook's check cells tell you how far you got.
"""

from __future__ import annotations

import socketserver
from typing import Any

import minisocket
from minisocket import lab

# -- Exercise 1: which thread runs each hook of a ThreadingTCPServer ---------------------
#
# verify_request runs in _handle_request_noblock, before process_request hands the
# request over: on the loop.  handle_error is called by ThreadingMixIn's
# process_request_thread, around finish_request: on the request's thread.
# service_actions is called by serve_forever once per pass: on the loop, and (notebook
# 03, section 8) possibly while requests are still being served.

prediction = {"verify_request": "loop", "handle_error": "handler", "service_actions": "loop"}


class _Fails(minisocket.BaseRequestHandler):
    def handle(self) -> None:
        raise ValueError("on purpose")


class _Quiet(minisocket.ThreadingTCPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Traced (the trace event comes before this call); not logged."""


def trace_a_failing_request() -> str:
    """Check the prediction with a tracer: the trace of one failing request, as a table."""
    server = _Quiet(("127.0.0.1", 0), _Fails)
    server.tracer = recorder = minisocket.TraceRecorder()
    with minisocket.serving(server):
        lab.converse(server.server_address)

        def done() -> bool:
            steps = recorder.steps()
            after = steps[steps.index("get_request") :] if "get_request" in steps else []
            return "close_request" in after and "service_actions" in after

        lab.wait_until(done)
    only = ("get_request", "verify_request", "handle_error", "close_request", "service_actions")
    return lab.trace_table(recorder.events, only=only)


# -- Exercise 2: why does server_close() hang? -------------------------------------------
#
# B.  socketserver's ThreadingMixIn.server_close() joins every non-daemon request
# thread, with no time limit, and the idle client's thread is blocked in recv() (inside
# `for line in self.rfile`) until that client sends a line or leaves.  shutdown() had
# been called (so not C), the listening socket's close does not wait for anything (not
# A), and the client was accepted: the talking client that connected after it was
# answered, and connections are accepted in order (not D).
#
# Fixes that leave the handler alone: daemon_threads = True (daemon threads are not
# joined; the thread ends when its client does, or dies with the interpreter), or
# block_on_close = False (server_close does not join).  Either way the idle handler
# thread keeps running after server_close() returned.  minisocket's ThreadingTCPServer
# bounds the wait instead: after close_grace seconds it shuts the remaining connections
# down, so their handlers read end of file and return (notebook 05).

why = "B"


class QuickToClose(socketserver.ThreadingTCPServer):
    daemon_threads = True
