"""Pipeline events: a request's path, step by step, for notebooks and widgets.

Design note
-----------
Every layer of minisocket can report what it is doing: the listening socket accepting
a connection, the loop waking up, the pipeline verifying and dispatching a request,
the handler's setup/handle/finish.  Nobody pays for this unless they listen: a server's
``tracer`` attribute is ``None`` by default and every emitting site is guarded by one
attribute test.

A tracer is any callable taking a :class:`TraceEvent`.  :class:`TraceRecorder` is the
usual one: it appends to a list, which is safe from any thread (``list.append`` is
atomic), so a notebook can start a threading server, run a request and print the
events afterwards in one deterministic block.

This module is plumbing shared by every layer, so it imports nothing from minisocket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["TraceEvent", "TraceRecorder", "Tracer", "emit"]


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


def emit(tracer: Tracer, step: str, client_address: Any = None, detail: str = "") -> None:
    """Build a :class:`TraceEvent` for the calling thread and hand it to *tracer*.

    Callers test ``tracer is not None`` first, so tracing costs nothing when off.
    """
    tracer(
        TraceEvent(step, threading.current_thread().name, time.monotonic(), client_address, detail)
    )


class TraceRecorder:
    """A tracer that keeps every event in :attr:`events`, in arrival order.

    >>> recorder = TraceRecorder()
    >>> emit(recorder, "verify_request", ("127.0.0.1", 1), "accepted")
    >>> recorder.steps()
    ['verify_request']
    """

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []

    def __call__(self, event: TraceEvent) -> None:
        self.events.append(event)

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(list(self.events))

    def __len__(self) -> int:
        return len(self.events)

    def steps(self) -> list[str]:
        """The step names, in order: the shape of a trace without its timings."""
        return [event.step for event in self.events]

    def clear(self) -> None:
        """Forget every event recorded so far."""
        self.events.clear()
