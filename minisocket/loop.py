"""Layer 02 — the loop: serve_forever, shutdown, handle_request over ``selectors``.

Design note
-----------
A blocking ``accept()`` cannot be interrupted: a thread parked in it stays there until a
client arrives, so nothing can ask it to stop.  socketserver therefore never blocks in
accept; it waits in ``select`` with a timeout (``poll_interval``, 0.5 s) and checks a
flag between waits.  Its own comment admits the cost: ``shutdown()`` waits up to one
poll interval, a median of about 250 ms, before the loop notices.

minisocket waits on two descriptors instead of one: the listening socket and the read
end of a socket pair (a *waker*).  ``shutdown()`` sets the flag and writes one byte to
the pair, so ``select`` returns at once.  ``poll_interval`` is still accepted and still
paces ``service_actions()`` when the server is idle, so code written for socketserver
behaves the same, only faster to stop.

Two of socketserver's hangs are fixed here:

* ``shutdown()`` while no ``serve_forever()`` runs returns at once (socketserver waits
  forever).  The request stays pending, so a ``serve_forever()`` that is just starting in
  another thread returns immediately -- exactly what socketserver guarantees.
* ``shutdown()`` called on the serving thread itself (from a handler of a synchronous
  server) cannot wait for the loop it is running in; it asks the loop to stop after the
  current request and returns (socketserver deadlocks).

Sleeping has a price of its own.  When ``select`` blocks, the thread's CPU goes idle,
and waking it again takes the kernel (and, in a virtual machine, the hypervisor) tens of
microseconds -- more than a small request costs to serve.  ``busy_poll`` trades CPU for
that latency: after a pass that handled something, the loop keeps polling with a zero
timeout for up to ``busy_poll`` seconds before it sleeps, so a client that answers
quickly finds the loop awake.  It is off by default; it pays only for servers that do
their work on the loop's thread (layer 05's event-driven server), and costs at most
``busy_poll`` seconds of CPU each time traffic pauses.

Who calls what: the application calls ``serve_forever`` (one thread), ``shutdown`` (any
other thread), or ``handle_request`` (one request, honouring ``timeout``).  The loop
calls ``_handle_request_noblock`` when the socket is readable -- the pipeline, layer 03
-- and ``service_actions`` once per iteration.  A subclass may override
``service_actions`` and ``handle_timeout``.
"""

from __future__ import annotations

import select
import selectors
import socket
import threading
import time
from typing import Any

from .sockets import ServerBase
from .trace import emit

__all__ = ["ServeLoop", "Waker"]

# poll() scales better than select() and, unlike epoll, costs no extra descriptor per
# loop: the right default for a loop that watches two descriptors.
_Selector: type[selectors.BaseSelector] = getattr(
    selectors, "PollSelector", selectors.SelectSelector
)


class Waker:
    """A socket pair that makes a ``select`` on :meth:`fileno` return on demand.

    ``wake()`` may be called from any thread, any number of times: a full pipe already
    means a wake-up is pending, so extra bytes are dropped.  The loop calls ``drain()``
    when the pair becomes readable.
    """

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def fileno(self) -> int:
        return self._reader.fileno()

    def wake(self) -> None:
        try:
            self._writer.send(b"\0")
        except BlockingIOError:
            pass  # the buffer is full: a wake-up is already on its way

    def drain(self) -> None:
        try:
            while self._reader.recv(4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


def _wait(
    selector: selectors.BaseSelector, timeout: float | None, busy_poll: float
) -> list[tuple[selectors.SelectorKey, int]]:
    """``selector.select(timeout)``, but polling without sleeping for the first
    *busy_poll* seconds of it (never more than *timeout*)."""
    if busy_poll <= 0:
        return selector.select(timeout)
    if timeout is not None:
        busy_poll = min(busy_poll, timeout)
    deadline = time.perf_counter() + busy_poll
    while not (ready := selector.select(0)):
        if time.perf_counter() >= deadline:
            return selector.select(None if timeout is None else timeout - busy_poll)
    return ready


class _Run:
    """One execution of serve_forever: who runs it, what it waits on, when it is over."""

    __slots__ = ("thread_id", "selector", "waker", "done")

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.thread_id = threading.get_ident()
        self.selector = selector
        self.waker = Waker()
        self.done = threading.Event()

    def close(self) -> None:
        self.selector.close()
        self.waker.close()


class ServeLoop(ServerBase):
    """The serving loop, for any server with a ``fileno()``.

    ``timeout`` (class attribute, default ``None``): how long ``handle_request`` waits
    before calling ``handle_timeout``; ``None`` waits forever.  ``selector_class``: the
    :mod:`selectors` class serve_forever uses (``poll``; servers that watch many
    connections choose ``epoll``).  ``busy_poll`` (seconds, default 0, off): after a
    pass that handled events, poll that long without sleeping before blocking again;
    lower latency for more CPU (see the module's design note).

    Besides the listening socket and the waker, the loop runs callbacks: a descriptor
    registered on :attr:`loop_selector` with a callable as its ``data`` gets
    ``callback(events)`` when ready.  Layer 05's event-driven server builds on that.
    """

    timeout: float | None = None
    selector_class: type[selectors.BaseSelector] = _Selector
    busy_poll: float = 0.0

    def __init__(self, server_address: Any, RequestHandlerClass: Any) -> None:
        super().__init__(server_address, RequestHandlerClass)
        self._loop_lock = threading.Lock()
        self._shutdown_requested = False
        self._run: _Run | None = None

    # -- for the caller -------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Handle requests until :meth:`shutdown` is called.

        *poll_interval* bounds how long the loop sleeps between calls to
        :meth:`service_actions`; shutdown does not wait for it.
        """
        if not self.busy_poll >= 0:  # also rejects NaN
            raise ValueError(f"busy_poll must be >= 0 seconds, not {self.busy_poll!r}")
        run = _Run(self.selector_class())
        with self._loop_lock:
            if self._run is not None:
                run.close()
                raise RuntimeError("serve_forever() is already running on this server")
            self._run = run
        if self.tracer is not None:
            emit(self.tracer, "serve_forever")
        try:
            selector, waker = run.selector, run.waker
            selector.register(self, selectors.EVENT_READ)
            selector.register(waker, selectors.EVENT_READ)
            self._loop_started(selector)
            ready: list[tuple[selectors.SelectorKey, int]] = []
            while not self._shutdown_requested:
                # Busy-poll only right after traffic: an idle loop never burns CPU.
                ready = _wait(selector, poll_interval, self.busy_poll if ready else 0.0)
                # shutdown() may have been called while we slept: stop now, even if a
                # request is also waiting (socketserver does the same).
                if self._shutdown_requested:
                    break
                for key, events in ready:
                    callback = key.data
                    if callback is not None:
                        callback(events)
                    elif key.fileobj is waker:
                        waker.drain()
                    else:
                        self._handle_request_noblock()
                self.service_actions()
        finally:
            with self._loop_lock:
                self._shutdown_requested = False
                self._run = None
            self._loop_stopped(run.selector)
            run.close()
            run.done.set()
            if self.tracer is not None:
                emit(self.tracer, "serve_forever_exit")

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait until it has returned.

        Returns at once when no loop is running (the request stays pending for the next
        ``serve_forever``) and when called from the serving thread itself (the loop
        stops after the current request).  Must not be called while holding anything
        the serving thread needs.
        """
        with self._loop_lock:
            self._shutdown_requested = True
            run = self._run
            if run is not None:
                run.waker.wake()  # under the lock: the loop cannot close the pair meanwhile
        if self.tracer is not None:
            emit(self.tracer, "shutdown", None, "waiting" if run else "no loop running")
        if run is None or run.thread_id == threading.get_ident():
            return
        run.done.wait()

    def handle_request(self) -> None:
        """Wait for and handle one request, or call :meth:`handle_timeout`.

        Waits at most the smaller of ``self.timeout`` and the socket's own timeout;
        ``None`` for both means wait as long as it takes.
        """
        timeout = self._request_timeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.selector_class() as selector:
            selector.register(self, selectors.EVENT_READ)
            while not selector.select(timeout):
                # Only a finite timeout can return nothing; check the clock anyway, in
                # case the selector woke early.
                assert deadline is not None
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    self.handle_timeout()
                    return
        self._handle_request_noblock()

    def pause(self, seconds: float) -> None:
        """Sleep up to *seconds*; on the serving thread, a :meth:`shutdown` cuts it short."""
        run = self._run
        if run is None or run.thread_id != threading.get_ident():
            time.sleep(seconds)
            return
        # The waker's byte is left unread: the loop drains it on its next turn.
        select.select([run.waker], [], [], seconds)

    # -- for subclasses ---------------------------------------------------------------

    def service_actions(self) -> None:
        """Called once per loop iteration (at least every poll_interval). Override it."""
        if self.tracer is not None:
            emit(self.tracer, "service_actions")

    def handle_timeout(self) -> None:
        """Called by :meth:`handle_request` when no request arrived in time."""

    def _loop_started(self, selector: selectors.BaseSelector) -> None:
        """Called on the serving thread once serve_forever's selector is ready."""

    def _loop_stopped(self, selector: selectors.BaseSelector) -> None:
        """Called on the serving thread as serve_forever ends, before its selector closes."""

    def _handle_request_noblock(self) -> None:
        """Take one ready request and serve it; the pipeline (layer 03) defines this."""
        raise NotImplementedError("the request pipeline is layer 03 (minisocket.pipeline)")

    def _request_timeout(self) -> float | None:
        own = self.timeout
        sock = getattr(self, "socket", None)
        theirs: float | None = sock.gettimeout() if sock is not None else None
        if own is None:
            return theirs
        if theirs is None:
            return own
        return min(own, theirs)

    @property
    def loop_selector(self) -> selectors.BaseSelector | None:
        """The running serve_forever's selector, or ``None``: for the serving thread."""
        run = self._run
        return run.selector if run is not None else None

    @property
    def serving(self) -> bool:
        """True while a :meth:`serve_forever` runs (a snapshot: it may change at once)."""
        return self._run is not None
