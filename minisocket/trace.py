"""What a server tells you: trace events for notebooks and widgets, and its log.

Design note
-----------
Every layer of minisocket can report what it is doing: the listening socket accepting
a connection, the loop waking up, the pipeline verifying and dispatching a request,
the handler's setup/handle/finish.  Nobody pays much for this unless they listen: a
server's ``tracer`` attribute is ``None`` by default, and :func:`emit` returns after
one attribute lookup.  There is one code path, traced or not.

A tracer is any callable taking a :class:`TraceEvent`.  :class:`TraceRecorder` is the
usual one: it appends to a list, which is safe from any thread (``list.append`` is
atomic), so a notebook can start a threading server, run a request and print the
events afterwards in one deterministic block.

Errors and warnings go to the ``minisocket`` logger.  The warnings a flood of clients
triggers one per client (a refused connection, an oversized datagram) go through a
:class:`RepeatedWarning`, so a flood costs a line a second, each line saying how many
it stands for.

This module is plumbing shared by every layer, so it imports nothing from minisocket.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("minisocket")


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One step of a request's path through a server.

    ``step`` is the name of the hook that ran (``"get_request"``, ``"verify_request"``,
    ``"handle"``, ``"shutdown"``, ...); ``thread`` the name of the thread that ran it;
    ``time`` a :func:`time.monotonic` timestamp; ``client_address`` the peer, or ``None``
    for server-wide steps; ``detail`` a short free-form note (a verdict, an error).
    """

    step: str
    thread: str
    time: float
    client_address: Any = None
    detail: str = ""


Tracer = Callable[[TraceEvent], None]


def emit(source: Any, step: str, client_address: Any = None, detail: str = "") -> None:
    """Hand a :class:`TraceEvent` for the calling thread to ``source.tracer``, if set.

    *source* is a server, or anything else with a ``tracer`` attribute; objects without
    one (a socketserver server driving a minisocket handler) are simply not traced.
    """
    tracer = getattr(source, "tracer", None)
    if callable(tracer):  # (not, say, an OpenTelemetry tracer a subclass keeps there)
        thread = threading.current_thread().name
        tracer(TraceEvent(step, thread, time.monotonic(), client_address, detail))


class TraceRecorder:
    """A tracer that keeps every event in :attr:`events`, in arrival order.

    >>> class Server:
    ...     tracer = TraceRecorder()
    >>> emit(Server, "verify_request", ("127.0.0.1", 1), "accepted")
    >>> Server.tracer.steps()
    ['verify_request']
    """

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []

    def __call__(self, event: TraceEvent) -> None:
        self.events.append(event)

    def steps(self) -> list[str]:
        """The step names, in order: the shape of a trace without its timings."""
        return [event.step for event in self.events]


class RepeatedWarning:
    """A warning logged at most once per *interval* seconds, with a count of the rest.

    Calling it logs *message* (a %-format, with the call's arguments) -- unless the last
    one was logged less than *interval* seconds ago: then it is only counted.  The
    count is logged ("*what*: N more") before the next message, or by :meth:`flush`
    (servers call it from ``server_close``), so every occurrence is accounted for.
    """

    def __init__(self, what: str, message: str, interval: float = 1.0) -> None:
        self.what, self.message, self.interval = what, message, interval
        self.held, self.last = 0, float("-inf")

    def __call__(self, *args: Any) -> None:
        if time.monotonic() - self.last < self.interval:
            self.held += 1
        else:
            self.flush()
            self.last = time.monotonic()
            logger.warning(self.message, *args)

    def flush(self) -> None:
        """Log how many were held back since the last message, if any."""
        if self.held:
            logger.warning("%s: %d more since the last report", self.what, self.held)
            self.held = 0
