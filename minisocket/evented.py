"""Layer 05 — the event-driven server: one thread, every connection in one selector.

Design note
-----------
socketserver has no single-threaded concurrent server: its handlers *block* (``recv``
waits for data), so serving two clients at once takes two threads or two processes.
An event-driven server turns the handler inside out.  The loop (layer 02) already waits
on several descriptors; here every connection is one more, in non-blocking mode, and
the handler is a set of callbacks the loop calls when something happened:

    connection_made()        the connection was accepted and registered
    data_received(data)      bytes arrived (any amount: a message may come in pieces)
    eof_received()           the client will send no more; return True to keep writing
    connection_lost(exc)     the connection is gone (exc is None for a clean close)

and two methods the handler calls: ``send(data)`` and ``close()``.

``send`` never blocks.  It writes what the kernel accepts at once and keeps the rest in
an output buffer that the loop flushes when the socket becomes writable again.  A
client that does not read makes that buffer grow, so past ``high_water`` bytes the
server stops *reading* from that connection -- it cannot produce more output -- until
the buffer drains below ``low_water`` (back-pressure).  ``close`` sends what is
buffered, then closes.

Input is read with ``recv_into`` into one 64 KiB buffer the server reuses for every
connection (asyncio reads 256 KiB per ``recv``: a fresh allocation above glibc's mmap
threshold, i.e. an mmap/munmap pair per read).

A callback that raises is reported through ``handle_error`` (logged, with traceback)
and its connection is closed; the other connections never notice.  The price of one
thread: a callback that computes for a second stalls every connection for a second
(notebook 06 measures it).  Keep callbacks short; hand CPU work to a pool.

The reference example, the blog's upper-case echo, is three lines::

    class UpperEcho(ProtocolRequestHandler):
        def data_received(self, data):
            self.send(data.upper())
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from typing import TYPE_CHECKING, Any

from .pipeline import TCPServer, UnixStreamServer
from .trace import emit

__all__ = [
    "ProtocolRequestHandler",
    "SelectorMixIn",
    "SelectorTCPServer",
    "SelectorUnixStreamServer",
]

logger = logging.getLogger("minisocket")

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_OPEN, _CLOSING, _CLOSED = "open", "closing", "closed"

# For the type checker the mix-in is a stream server (it needs a listening socket).
if TYPE_CHECKING:
    _MixInBase = TCPServer
else:
    _MixInBase = object


class ProtocolRequestHandler:
    """One connection of a :class:`SelectorMixIn` server, as callbacks.

    Override the callbacks; call :meth:`send` and :meth:`close`.  Attributes:
    ``request`` (the non-blocking socket), ``client_address``, ``server``.
    ``high_water``/``low_water``: output-buffer sizes (bytes) at which reading from
    this connection pauses and resumes.  ``max_buffered``: past this many unsent
    bytes the connection is aborted with ``BufferError`` -- back-pressure stops the
    *client* from making the server produce more, but a handler that keeps calling
    ``send`` without looking at :attr:`buffered` would otherwise grow the buffer
    without limit (``None``: no limit).  ``disable_nagle_algorithm`` (default true, as
    in asyncio): set ``TCP_NODELAY`` on TCP connections.
    """

    high_water: int = 256 * 1024
    low_water: int = 64 * 1024
    max_buffered: int | None = 64 * 1024 * 1024
    disable_nagle_algorithm: bool = True  # as asyncio does: replies go out at once

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        self.request = request
        self.client_address = client_address
        self.server = server
        self._out = bytearray()
        self._state = _OPEN
        self._reading = True  # false while paused by back-pressure
        self._eof = False
        self._selector: selectors.BaseSelector | None = None
        self._events = 0  # what the selector watches for us now
        self._last_active = time.monotonic()  # for the server's idle_timeout

    # -- callbacks: override these ----------------------------------------------------

    def connection_made(self) -> None:
        """The connection is ready; ``send`` may be called from here on."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived. Messages are not framed: a line may arrive in pieces."""

    def eof_received(self) -> bool | None:
        """The client half-closed. Return True to keep the connection open for sending
        (then call :meth:`close` when done); by default it is closed once the output
        buffer is flushed."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is closed; *exc* says why, or is None for an orderly close."""

    # -- methods for the handler -----------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes accepted by :meth:`send` and not yet handed to the kernel."""
        return len(self._out)

    @property
    def closed(self) -> bool:
        return self._state is _CLOSED

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue *data* for sending; never blocks. Ignored once the connection closed."""
        if self._state is not _OPEN or not data:
            return
        if not self._out:
            # Nothing queued: try the kernel first, which usually takes everything.
            try:
                sent = self.request.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._lose(exc)
                return
            if sent == len(data):
                return
            self._out += memoryview(data)[sent:]
        else:
            self._out += data
        if self.max_buffered is not None and len(self._out) > self.max_buffered:
            self._out.clear()
            self._lose(BufferError(f"more than {self.max_buffered} bytes waiting to be sent"))
            return
        self._update_events()

    def close(self) -> None:
        """Close after the buffered output has been sent."""
        if self._state is not _OPEN:
            return
        if self._out:
            self._state = _CLOSING
            self._update_events()
        else:
            self._lose(None)

    def abort(self) -> None:
        """Close at once, discarding buffered output."""
        self._out.clear()
        self._lose(None)

    # -- the machinery, called by the server's loop ------------------------------------

    def _attach(self, selector: selectors.BaseSelector) -> None:
        """Start watching on *selector* (a new run's selector after a restart)."""
        self._selector = selector
        self._events = 0
        self._update_events()

    def _detach(self) -> None:
        """The selector is going away: forget it without touching it."""
        self._selector = None
        self._events = 0

    def _ready(self, events: int) -> None:
        """The selector callback: flush, then read."""
        try:
            if events & _WRITE:
                self._flush()
            if events & _READ and self._state is _OPEN:
                self._read()
        except Exception:
            self.server._report_error(self.request, self.client_address)
            self.abort()

    def _read(self) -> None:
        server = self.server
        try:
            size = self.request.recv_into(server._read_buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lose(exc)
            return
        if size:
            self._last_active = time.monotonic()
            tracer = server.tracer
            if tracer is not None:
                emit(tracer, "data_received", self.client_address, f"{size} bytes")
            self.data_received(server._read_view[:size].tobytes())
            return
        self._eof = True
        if server.tracer is not None:
            emit(server.tracer, "eof_received", self.client_address)
        if self.eof_received():
            self._update_events()  # stop reading, keep the write side
        else:
            self.close()

    def _flush(self) -> None:
        try:
            sent = self.request.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._out.clear()
            self._lose(exc)
            return
        del self._out[:sent]  # O(1): bytearray drops a prefix by moving its start
        if not self._out and self._state is _CLOSING:
            self._lose(None)
        else:
            self._update_events()

    def _update_events(self) -> None:
        """Make the selector watch exactly what this connection needs now."""
        pending = len(self._out)
        tracer = self.server.tracer
        if self._reading and pending > self.high_water:
            self._reading = False
            if tracer is not None:
                emit(tracer, "pause_reading", self.client_address, f"{pending} buffered")
        elif not self._reading and pending <= self.low_water:
            self._reading = True
            if tracer is not None:
                emit(tracer, "resume_reading", self.client_address)
        wanted = _WRITE if pending else 0
        if self._reading and not self._eof and self._state is _OPEN:
            wanted |= _READ
        if wanted == self._events or self._selector is None:
            return
        if not self._events:
            self._selector.register(self.request, wanted, self._ready)
        elif wanted:
            self._selector.modify(self.request, wanted, self._ready)
        else:
            self._selector.unregister(self.request)
        self._events = wanted

    def _lose(self, exc: Exception | None) -> None:
        """Tear down: unregister, tell the handler, give the socket back to the server."""
        if self._state is _CLOSED:
            return
        self._state = _CLOSED
        if self._events and self._selector is not None:
            self._selector.unregister(self.request)
            self._events = 0
        server = self.server
        if server.tracer is not None:
            emit(server.tracer, "connection_lost", self.client_address, repr(exc) if exc else "")
        try:
            self.connection_lost(exc)
        except Exception:
            server._report_error(self.request, self.client_address)
        finally:
            server._connection_closed(self)


class SelectorMixIn(_MixInBase):
    """Serve every connection from the loop's thread, with :class:`ProtocolRequestHandler`.

    Connections are served only while ``serve_forever`` runs; after ``shutdown()``
    they stay open, frozen, until the next ``serve_forever`` (which resumes them) or
    ``server_close`` (which closes them).  ``handle_request`` is not supported.

    ``idle_timeout`` (seconds, default ``None``): connections that received nothing for
    that long are closed (``connection_lost`` gets a ``TimeoutError``), checked from
    ``service_actions``, so within ``idle_timeout`` plus a ``poll_interval``.

    For the lowest latency, set ``busy_poll`` (seconds; layer 02): the loop then keeps
    polling that long after each burst of traffic instead of putting its thread to
    sleep.  On this project's 2-CPU virtual machine, ``busy_poll = 50e-6`` took one
    connection's round trip from about 80 us to 23 us, for up to 50 us of CPU each time
    traffic pauses (``python -m minisocket.bench.ratios`` measures both).
    """

    selector_class: type[selectors.BaseSelector] = selectors.DefaultSelector
    read_size: int = 64 * 1024
    _next_sweep: float = 0.0

    def server_activate(self) -> None:
        handler = self.RequestHandlerClass
        if isinstance(handler, type) and not issubclass(handler, ProtocolRequestHandler):
            raise TypeError(
                f"{type(self).__name__} needs a ProtocolRequestHandler subclass, "
                f"not {handler.__name__}: its handlers must not block"
            )
        super().server_activate()
        # The loop accepts only when the socket is readable, but a client may reset in
        # between; a blocking accept() would then freeze every connection.
        self.socket.setblocking(False)
        self._read_buffer = bytearray(self.read_size)
        self._read_view = memoryview(self._read_buffer)
        self._connections: set[ProtocolRequestHandler] = set()

    @property
    def connections(self) -> frozenset[ProtocolRequestHandler]:
        """The open connections (a snapshot)."""
        return frozenset(self._connections)

    def handle_request(self) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} serves connections only inside serve_forever()"
        )

    def _loop_started(self, selector: selectors.BaseSelector) -> None:
        super()._loop_started(selector)
        for connection in self._connections:  # left open by an earlier run
            connection._attach(selector)

    def service_actions(self) -> None:
        super().service_actions()
        idle = self.idle_timeout
        if idle is not None:
            now = time.monotonic()
            if now >= self._next_sweep:
                # A sweep is O(connections): a few per idle period, not one per event.
                self._next_sweep = now + min(idle / 4, 1.0)
                for connection in list(self._connections):
                    if now - connection._last_active > idle:
                        self._close_idle(connection)

    def _close_idle(self, connection: ProtocolRequestHandler) -> None:
        if self.tracer is not None:
            emit(self.tracer, "idle_timeout", connection.client_address)
        logger.info("closed idle connection from %s", connection.client_address)
        connection._out.clear()
        connection._lose(TimeoutError(f"idle for more than {self.idle_timeout} s"))

    def _loop_stopped(self, selector: selectors.BaseSelector) -> None:
        for connection in self._connections:  # frozen until the next run or close
            connection._detach()
        super()._loop_stopped(selector)

    def process_request(self, request: Any, client_address: Any) -> None:
        selector = self.loop_selector
        if selector is None:
            raise RuntimeError("SelectorMixIn serves connections only inside serve_forever()")
        request.setblocking(False)
        handler = self.RequestHandlerClass(request, client_address, self)
        if handler.disable_nagle_algorithm and request.family != socket.AF_UNIX:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections.add(handler)
        handler._attach(selector)
        if self.tracer is not None:
            emit(self.tracer, "connection_made", client_address)
        try:
            handler.connection_made()
        except Exception:
            self._report_error(request, client_address)
            handler.abort()

    def _connection_closed(self, handler: ProtocolRequestHandler) -> None:
        self._connections.discard(handler)
        self.shutdown_request(handler.request)

    def server_close(self) -> None:
        for connection in list(getattr(self, "_connections", ())):
            connection.abort()
        super().server_close()


class SelectorTCPServer(SelectorMixIn, TCPServer):
    pass


class SelectorUnixStreamServer(SelectorMixIn, UnixStreamServer):
    pass
