"""Layer 02 — the loop: serve_forever, shutdown, handle_request over ``selectors``.

Design note
-----------
A blocking ``accept()`` cannot be interrupted: a thread parked in it stays there until a
client arrives, so nothing can ask it to stop.  socketserver therefore never blocks in
accept; it waits in ``select`` with a timeout (``poll_interval``, 0.5 s) and checks a
flag between waits.  Its own comment admits the cost: ``shutdown()`` waits up to one
poll interval, a median of about 250 ms, before the loop notices.

minisocket's loop waits on one more descriptor: the read end of a socket pair, the
*waker*.  ``shutdown()`` sets the flag and writes a byte to the pair, so ``select``
returns at once.  ``poll_interval`` still paces ``service_actions()`` when the server is
idle, so code written for socketserver behaves the same, only faster to stop.

The selector and the waker belong to the server for its whole life: made on first use,
released by ``server_close()``.  Later layers watch their own descriptors on the same
selector through a small public API, all of it called on the serving thread:

    register(fileobj, events, callback)   callback(events) whenever fileobj is ready
    unregister(fileobj)                   stop watching it
    pause_accepting() / resume_accepting()  stop and restart watching the listening
                                          socket; pauses nest, so mix-ins compose
    call_later(delay, callback)           run callback once, after delay seconds
    poll(timeout)                         one pass: wait, run what is ready and due

Three of socketserver's hangs are fixed here:

* ``shutdown()`` while no ``serve_forever()`` runs returns at once (socketserver waits
  forever).  The request stays pending: a ``serve_forever()`` that starts later --
  say, a thread that was just being started -- returns at once, without touching the
  socket.
* ``shutdown()`` called on the serving thread itself (from a handler of a synchronous
  server) cannot wait for the loop it is running in; it asks the loop to stop after the
  current request and returns (socketserver deadlocks).
* ``server_close()`` while ``serve_forever()`` runs on another thread stops that loop
  first, as ``shutdown()`` would (socketserver closes the socket under the running loop).

Who calls what: the application calls ``serve_forever`` (one thread), ``shutdown`` (any
thread), ``handle_request`` (one request, honouring ``timeout``), ``server_close``.  The
loop calls ``_handle_request_noblock`` when the listening socket is readable -- the
pipeline, layer 03 -- and ``service_actions`` once per pass.  A subclass may override
``service_actions`` and ``handle_timeout``.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .trace import Tracer, emit

_order = itertools.count()  # breaks ties between timers due at the same instant


class Waker:
    """A socket pair that makes a ``select`` on :meth:`fileno` return on demand.

    ``wake()`` may be called from any thread, any number of times: a full buffer already
    means a wake-up is pending, so extra bytes are dropped.  ``drain`` is the loop's
    callback for it.
    """

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)

    def fileno(self) -> int:
        return self.reader.fileno()

    def wake(self) -> None:
        try:
            self.writer.send(b"\0")
        except BlockingIOError:
            pass  # the buffer is full: a wake-up is already on its way

    def drain(self, events: int = selectors.EVENT_READ) -> None:
        try:
            self.reader.recv(4096)  # if more is waiting, the next select() says so
        except BlockingIOError:
            pass

    def close(self) -> None:
        for sock in (self.reader, self.writer):
            sock.close()


class ServeLoop:
    """The serving loop and the server's selector (the *reactor*).

    ``timeout`` (default ``None``): how long ``handle_request`` waits before calling
    ``handle_timeout``.  ``selector_class``: the :mod:`selectors` class to wait with.
    ``tracer``: receives a :class:`~minisocket.trace.TraceEvent` per step (``None``:
    off).  ``socket``: the listening socket, which ``TCPServer`` (layer 03) creates;
    the loop watches the server's ``fileno()`` and honours the socket's timeout.
    """

    timeout: float | None = None
    # poll() has no descriptor limit (select() stops at 1024) and, unlike epoll, costs no
    # descriptor of its own: the right default for a loop that watches two descriptors.
    selector_class: type[selectors.BaseSelector] = selectors.PollSelector
    tracer: Tracer | None = None
    socket: socket.socket

    def __init__(self) -> None:
        self.__changed = threading.Condition()  # guards the next three, the selector's birth
        self.__serving: threading.Thread | None = None  # the thread running serve_forever
        self.__shutdown_request = False
        self.__closed = False
        self.__selector: selectors.BaseSelector | None = None
        self.__waker: Waker | None = None
        self.__timers: list[tuple[float, int, Callable[[], object]]] = []
        self.__paused = 0  # pause_accepting() calls not yet resumed
        self.__accepted = 0  # listening-socket readiness handled, for handle_request

    # -- for the caller ---------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Handle requests until :meth:`shutdown` is called.

        *poll_interval* bounds how long the loop sleeps between calls to
        :meth:`service_actions`; shutdown does not wait for it.
        """
        if not self.__start():
            return
        emit(self, "serve_forever")
        try:
            while not self.__shutdown_request:
                ready = self.__select(poll_interval)
                if self.__shutdown_request:  # shutdown() during the wait: stop now,
                    break  # even with a request waiting (socketserver does the same)
                self.__run(ready)
                self.service_actions()
        finally:
            self.__finish()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait until it has returned.

        Returns at once when no loop is running (the request stays pending for the next
        ``serve_forever``) and when called from the serving thread itself (the loop
        stops after the current pass).  Must not be called while holding anything the
        serving thread needs.
        """
        with self.__changed:
            self.__shutdown_request = True
            serving = self.__running()
            emit(self, "shutdown", None, "no loop running" if serving is None else "waiting")
            if serving is not None and self.__waker is not None:
                self.__waker.wake()
                if serving is not threading.current_thread():
                    self.__changed.wait_for(lambda: self.__serving is not serving)

    def handle_request(self) -> None:
        """Wait for and handle one request, or call :meth:`handle_timeout`.

        Waits at most the smaller of ``self.timeout`` and the socket's own timeout;
        ``None`` for both means wait as long as it takes, 0 means look once.
        """
        timeouts = [t for t in (self.timeout, self.socket.gettimeout()) if t is not None]
        timeout = min(timeouts, default=None)
        deadline = None if timeout is None else time.monotonic() + timeout
        accepted = self.__accepted
        while True:
            self.poll(timeout)
            if self.__accepted != accepted:
                return
            if deadline is not None and (timeout := deadline - time.monotonic()) <= 0:
                self.handle_timeout()
                return

    def server_close(self) -> None:
        """Release the selector and the waker; a loop still running stops first."""
        with self.__changed:
            self.__closed = True
            serving = self.__running()
            if serving is None:
                self.__release()
        if serving is not None:
            self.shutdown()  # the loop releases them as it returns

    # -- for subclasses ---------------------------------------------------------------

    def service_actions(self) -> None:
        """Called once per pass of serve_forever (at least every poll_interval)."""
        emit(self, "service_actions")

    def handle_timeout(self) -> None:
        """Called by :meth:`handle_request` when no request arrived in time."""

    def fileno(self) -> int:
        """The descriptor the loop waits on for requests: ``TCPServer``'s socket's."""
        raise NotImplementedError("the listening socket is TCPServer's (layer 03)")

    def _handle_request_noblock(self) -> None:
        """Take one ready request and serve it; the pipeline (layer 03) defines this."""
        raise NotImplementedError("the request pipeline is layer 03 (minisocket.pipeline)")

    # -- the reactor: for later layers, on the serving thread -----------------------

    def register(self, fileobj: Any, events: int, callback: Callable[[int], object]) -> None:
        """Call ``callback(events)`` whenever *fileobj* is ready for *events*
        (``selectors.EVENT_READ`` and/or ``EVENT_WRITE``); again: replace both."""
        selector = self.__open()
        try:
            selector.modify(fileobj, events, callback)
        except KeyError:  # not registered yet
            selector.register(fileobj, events, callback)

    def unregister(self, fileobj: Any) -> None:
        """Stop watching *fileobj*."""
        if self.__selector is not None:
            self.__selector.unregister(fileobj)

    def pause_accepting(self) -> None:
        """Stop watching the listening socket: new clients wait in the backlog."""
        self.__paused += 1
        if self.__paused == 1:
            emit(self, "pause_accepting")
            if self.__selector is not None:
                self.__selector.unregister(self)

    def resume_accepting(self) -> None:
        """Undo one :meth:`pause_accepting`; the last one watches the socket again."""
        if not self.__paused:
            raise RuntimeError("resume_accepting() without pause_accepting()")
        self.__paused -= 1
        if not self.__paused:
            emit(self, "resume_accepting")
            if self.__selector is not None:
                self.__selector.register(self, selectors.EVENT_READ, self.__accept)

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        """Run ``callback()`` once, on the serving thread, *delay* seconds from now."""
        heapq.heappush(self.__timers, (time.monotonic() + delay, next(_order), callback))

    def poll(self, timeout: float | None) -> None:
        """One pass of the loop without serve_forever: wait up to *timeout* seconds,
        then run the callbacks of whatever is ready and the timers that are due."""
        self.__run(self.__select(timeout))

    # -- the machinery ------------------------------------------------------------------

    def __open(self) -> selectors.BaseSelector:
        if self.__selector is None:
            if self.__closed:
                raise ValueError(f"{self!r} is closed")
            self.__waker = Waker()
            self.__selector = self.selector_class()
            self.__selector.register(self.__waker, selectors.EVENT_READ, self.__waker.drain)
            if not self.__paused:
                self.__selector.register(self, selectors.EVENT_READ, self.__accept)
        return self.__selector

    def __release(self) -> None:
        selector, self.__selector = self.__selector, None
        waker, self.__waker = self.__waker, None
        if selector is not None:
            selector.close()
        if waker is not None:  # (also when the selector could not be made)
            waker.close()

    def __accept(self, events: int) -> None:
        self.__accepted += 1
        self._handle_request_noblock()

    def __select(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.__timers:
            due = max(0.0, self.__timers[0][0] - time.monotonic())
            timeout = due if timeout is None else min(timeout, due)
        return self.__open().select(timeout)

    def __run(self, ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, events in ready:
            key.data(events)
        timers, now = self.__timers, time.monotonic()
        while timers and timers[0][0] <= now:
            heapq.heappop(timers)[2]()

    def __running(self) -> threading.Thread | None:
        """The thread running serve_forever -- in this process: in a forked child, the
        parent's serving thread is gone (its selector and waker are copies to close)."""
        serving = self.__serving
        return serving if serving is not None and serving.is_alive() else None

    def __start(self) -> bool:
        with self.__changed:
            if self.__serving is not None:
                raise RuntimeError("serve_forever() is already running on this server")
            if self.__shutdown_request or self.__closed:  # shutdown() or server_close()
                self.__shutdown_request = False  # came first: this run is over
                return False
            self.__open()
            self.__serving = threading.current_thread()
        return True

    def __finish(self) -> None:
        with self.__changed:
            self.__serving = None
            self.__shutdown_request = False
            if self.__closed:
                self.__release()
            self.__changed.notify_all()
        emit(self, "serve_forever_exit")


@contextmanager
def serving(server: Any, poll_interval: float = 0.05) -> Iterator[Any]:
    """Run ``server.serve_forever()`` on a daemon thread for the length of a ``with``.

    On exit: ``shutdown()``, ``server_close()``, and the thread joined.  For tests,
    notebooks and scripts that need a live server in the background::

        with serving(TCPServer(("127.0.0.1", 0), Handler)) as server:
            talk_to(server.server_address)
    """
    thread = threading.Thread(
        target=server.serve_forever, args=(poll_interval,), name="serve_forever", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
