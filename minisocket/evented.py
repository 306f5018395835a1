"""Layer 06 — the event-driven server: one thread, every connection in one selector.

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
    pause_writing()          the output buffer passed high_water: stop producing
    resume_writing()         it drained to low_water: produce again
    connection_lost(exc)     the connection is gone (exc is None for an orderly close)

and three methods the handler calls: ``send(data)``, ``close()`` and ``abort()``.

The handler is the user's object: it holds those callbacks and methods, ``request``,
``client_address``, ``server``, and ``transport``.  Everything the library keeps for a
connection -- output buffer, registration, flow control, idle clock, state -- lives in
the library's :class:`Connection` (the ``transport``, whose ``buffered`` says how much
output waits), so a protocol may name its own state as it likes (``_state``, ``_buffer``,
``buffered``...) without breaking the connection.

``send`` never blocks.  It writes what the kernel accepts at once and keeps the rest,
which the loop flushes when the socket becomes writable again.  A client that does not
read makes that buffer grow, so past ``high_water`` bytes the server stops *reading*
from that connection and calls ``pause_writing()``: a handler streaming a large reply
stops producing until ``resume_writing()``.  A handler that keeps sending regardless
meets two limits, ``max_buffered`` for its connection and ``max_buffered_total`` for the
whole server: past either, its connection is aborted.

Ending a connection never hides lost data.  ``close()`` sends what is buffered, then an
orderly end.  A connection dropped with output still unsent -- ``abort()``, a limit, the
idle timeout, ``server_close`` after ``close_grace`` -- ends with a reset and a log line,
so the client sees an error, not a clean end after half a reply.

Input is read with ``recv_into`` into one 64 KiB buffer the server reuses for every
connection.  A callback that raises is reported through ``handle_error`` and its
connection aborted; the other connections never notice.  The price of one thread: a
callback that computes for a second stalls every connection for a second (notebook 07
measures it).  Keep callbacks short; hand CPU work to a pool.

The reference example, the blog's upper-case echo, is three lines::

    class UpperEcho(ProtocolRequestHandler):
        def data_received(self, data):
            self.send(data.upper())
"""

from __future__ import annotations

import enum
import os
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

from .pipeline import MixInBase, TCPServer, UnixStreamServer
from .sockets import reset
from .trace import emit, logger

_SO_ERROR = (socket.SOL_SOCKET, socket.SO_ERROR)


class State(enum.Enum):
    """Where a :class:`Connection` is in its life.

    ::

        OPEN --EOF, eof_received() true--> WRITE_ONLY
        OPEN, WRITE_ONLY --close() with output buffered--> CLOSING --flushed--> CLOSED
        OPEN, WRITE_ONLY --close() with nothing buffered, EOF, abort(), error--> CLOSED
        CLOSING --abort(), error--> CLOSED
    """

    OPEN = "open"  # reading (unless paused by back-pressure) and writing
    WRITE_ONLY = "write-only"  # the peer sent EOF; the handler kept the connection to write
    CLOSING = "closing"  # close() was called: flushing the buffer, reading nothing
    CLOSED = "closed"  # unregistered, the socket handed back to the server


_WRITABLE = (State.OPEN, State.WRITE_ONLY)


class ProtocolRequestHandler:
    """One connection of a :class:`SelectorMixIn` server, as callbacks.

    Override the callbacks; call :meth:`send`, :meth:`close` and :meth:`abort`.
    Attributes: ``request`` (the non-blocking socket), ``client_address``, ``server``,
    ``transport`` (the library's :class:`Connection`, set before ``connection_made``).
    Class attributes: ``high_water``/``low_water``, the buffered bytes at which reading
    pauses (and ``pause_writing`` is called) and resumes; ``max_buffered``, past which
    the connection is aborted (``None``: only the server's budget applies);
    ``disable_nagle_algorithm`` (default true, as in asyncio): ``TCP_NODELAY``.
    """

    high_water: int = 256 * 1024
    low_water: int = 64 * 1024
    max_buffered: int | None = 16 * 1024 * 1024
    disable_nagle_algorithm: bool = True

    transport: Connection

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        self.request, self.client_address, self.server = request, client_address, server

    def connection_made(self) -> None:
        """The connection is ready; ``send`` may be called from here on."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived. Messages are not framed: a line may arrive in pieces."""

    def eof_received(self) -> bool | None:
        """The client half-closed.  Return True to keep the connection open for sending
        (then call :meth:`close` when done); by default it is closed once the output
        buffer is flushed."""

    def pause_writing(self) -> None:
        """More than ``high_water`` bytes are buffered: stop sending until resumed."""

    def resume_writing(self) -> None:
        """The buffer drained to ``low_water``: sending may go on."""

    def connection_lost(self, exc: BaseException | None) -> None:
        """The connection is closed; *exc* says why, or is None for an orderly close."""

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue *data* for sending; never blocks. Ignored once the connection closes."""
        self.transport.write(data)

    def close(self) -> None:
        """Close after the buffered output has been sent."""
        self.transport.close()

    def abort(self) -> None:
        """Close at once; output still buffered is dropped, and the end is a reset."""
        self.transport.abort()


class _Connections:
    """What a :class:`SelectorMixIn` server keeps for all of its connections."""

    def __init__(self, read_size: int) -> None:
        self.open: set[Connection] = set()
        self.buffered = 0  # bytes waiting to be sent, over every connection
        self.buffer = bytearray(read_size)  # every read lands here first
        self.next_sweep = 0.0  # when service_actions next looks for idle connections
        self.pid = os.getpid()  # after a fork, the child must not touch them


class Connection:
    """The library's side of one connection: its socket, buffer, state and clock.

    It makes the handler and is the handler's ``transport``.  Everything runs on the
    serving thread: the selector callback :meth:`ready`, and :meth:`write`,
    :meth:`close` and :meth:`abort`, which the handler calls.
    """

    def __init__(self, server: SelectorMixIn, shared: _Connections, sock: Any, address: Any):
        self.server, self.shared, self.sock, self.address = server, shared, sock, address
        self.state = State.OPEN
        self.out = bytearray()
        self.paused = False  # back-pressure: not reading, and the handler asked to pause
        self.events = 0  # what the selector watches for this connection now
        self.last_active = time.monotonic()  # the last progress, either way
        self.handler: ProtocolRequestHandler = server.RequestHandlerClass(sock, address, server)
        self.handler.transport = self

    @property
    def buffered(self) -> int:
        """Bytes accepted by ``write`` and not yet handed to the kernel."""
        return len(self.out)

    def ready(self, events: int) -> None:
        """The selector callback (and, with no events, the start): flush, then read."""
        try:
            if not events:
                self.shared.open.add(self)
                self.update()
                emit(self.server, "connection_made", self.address)
                self.handler.connection_made()
            if events & selectors.EVENT_WRITE:
                self.flush()
            if events & selectors.EVENT_READ and self.state is State.OPEN:
                self.read()
        except Exception as exc:  # reported, and the connection ends: not the server
            emit(self.server, "handle_error", self.address)
            self.server.handle_error(self.sock, self.address)
            self.abort(exc)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.state not in _WRITABLE or not data:
            return
        self.out += data
        self.shared.buffered += memoryview(data).nbytes
        self.flush()  # the kernel usually takes it all at once
        limit = self.handler.max_buffered
        if (limit is not None and len(self.out) > limit) or (
            self.shared.buffered > self.server.max_buffered_total
        ):
            self.abort(BufferError("over max_buffered or the server's max_buffered_total"))

    def close(self) -> None:
        if self.state in _WRITABLE and self.out:
            self.state = State.CLOSING
            self.update()
        elif self.state is not State.CLOSING:
            self.abort()

    def abort(self, exc: BaseException | None = None) -> None:
        """End the connection now: unregister, tell the handler, hand the socket back."""
        if self.state is State.CLOSED:
            return
        self.state, dropped = State.CLOSED, len(self.out)
        self.shared.buffered -= dropped
        self.out = bytearray()
        if self.events:
            self.server.unregister(self.sock)
        self.shared.open.discard(self)
        ours = dropped > 0 and not isinstance(exc, ConnectionError)  # not the peer's doing
        if ours:
            logger.warning("dropped %d unsent bytes to %s (%r): reset", dropped, self.address, exc)
            reset(self.sock)
        # As in asyncio, connection_lost comes after the callback that caused it returns,
        # so a handler looping over its peers never sees one vanish under it.
        self.server.call_later(0, lambda: self.lost(exc, ours))

    def lost(self, exc: BaseException | None, was_reset: bool) -> None:
        emit(self.server, "connection_lost", self.address, repr(exc) if exc else "")
        try:
            self.handler.connection_lost(exc)
        except Exception:
            emit(self.server, "handle_error", self.address)
            self.server.handle_error(self.sock, self.address)
        finally:
            (self.server.close_request if was_reset else self.server.shutdown_request)(self.sock)

    def attempt(self, operation: Callable[[Any], int], buffer: Any) -> int | None:
        """A non-blocking ``send`` or ``recv_into``: ``None`` if it would block, or if it
        failed (the connection is then aborted with the error)."""
        try:
            return operation(buffer)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self.abort(exc)
            return None

    def read(self) -> None:
        size = self.attempt(self.sock.recv_into, self.shared.buffer)
        if size is None:
            return
        self.last_active = time.monotonic()
        if size:
            emit(self.server, "data_received", self.address, f"{size} bytes")
            self.handler.data_received(memoryview(self.shared.buffer)[:size].tobytes())
            return
        emit(self.server, "eof_received", self.address)
        keep_open = self.handler.eof_received()
        if self.state is State.OPEN and keep_open:  # (the handler may have closed it)
            self.state = State.WRITE_ONLY
            self.update()
        elif self.state is State.OPEN:
            self.close()

    def flush(self) -> None:
        if sent := self.attempt(self.sock.send, self.out):
            del self.out[:sent]  # O(1): bytearray drops a prefix by moving its start
            self.shared.buffered -= sent
            self.last_active = time.monotonic()
        if not self.out and self.state is State.CLOSING:
            self.abort()
        elif self.state is not State.CLOSED:  # (a failed send aborted the connection)
            self.update()

    def update(self) -> None:
        """Watch exactly what the connection needs now; pause or resume the handler."""
        pending, handler, was_paused = len(self.out), self.handler, self.paused
        if pending > handler.high_water:
            self.paused = True
        elif pending <= handler.low_water:
            self.paused = False
        wanted = selectors.EVENT_WRITE if pending else 0
        if self.state is State.OPEN and not self.paused:
            wanted |= selectors.EVENT_READ
        if wanted and wanted != self.events:
            self.server.register(self.sock, wanted, self.ready)
        elif self.events and not wanted:
            self.server.unregister(self.sock)
        self.events = wanted
        if self.paused != was_paused:
            step = "pause_writing" if self.paused else "resume_writing"
            emit(self.server, step, self.address, f"{pending} bytes buffered")
            (handler.pause_writing if self.paused else handler.resume_writing)()

    def check(self, now: float, idle_timeout: float | None) -> None:
        """From the server's sweep: end the connection if it made no progress for
        *idle_timeout*, or if the peer reset it while the handler only meant to write
        (a write-only connection is not watched for reading, so nothing else would)."""
        if idle_timeout is not None and now - self.last_active > idle_timeout:
            emit(self.server, "idle_timeout", self.address)
            logger.info("closed idle connection from %s", self.address)
            self.abort(TimeoutError(f"no progress for {idle_timeout} s"))
        elif self.state is State.WRITE_ONLY and (error := self.sock.getsockopt(*_SO_ERROR)):
            self.abort(ConnectionResetError(error, os.strerror(error)))


class SelectorMixIn(MixInBase):
    """Serve every connection from the loop's thread, with :class:`ProtocolRequestHandler`.

    Connections are served while the loop runs (``serve_forever``, ``handle_request``);
    after ``shutdown()`` they stay open, untouched, until the loop runs again or
    ``server_close()``.  ``server_close()`` stops accepting, closes every connection and
    gives their buffered output ``close_grace`` seconds to reach the clients.

    ``idle_timeout`` (seconds, default ``None``): connections that made no progress in
    either direction for that long are closed (``connection_lost`` gets a
    ``TimeoutError``), checked from ``service_actions`` at most every second (a quarter
    of ``idle_timeout`` if that is shorter) -- so only while ``serve_forever`` runs, and
    only if a subclass's ``service_actions`` calls ``super()``.  ``max_buffered_total``:
    the output the server may hold for all its connections together.  ``close_grace``:
    how long ``server_close`` lets buffered output drain (``None``: as long as it takes).
    For the lowest latency, a subclass may set ``selector_class = BusyPollSelector``.
    """

    selector_class: type[selectors.BaseSelector] = selectors.DefaultSelector
    read_size: int = 64 * 1024
    max_buffered_total: int = 64 * 1024 * 1024
    close_grace: float | None = 5.0
    __shared: _Connections | None = None

    def server_activate(self) -> None:
        handler = self.RequestHandlerClass
        if isinstance(handler, type) and not issubclass(handler, ProtocolRequestHandler):
            raise TypeError(f"{type(self).__name__} needs a ProtocolRequestHandler subclass")
        super().server_activate()
        # The loop accepts only when the socket is readable, but a client may reset in
        # between; a blocking accept() would then freeze every connection.
        self.socket.setblocking(False)
        self.__shared = _Connections(self.read_size)

    @property
    def connections(self) -> frozenset[ProtocolRequestHandler]:
        """The handlers of the open connections (a snapshot)."""
        return frozenset(c.handler for c in (self.__shared.open if self.__shared else ()))

    def process_request(self, request: Any, client_address: Any) -> None:
        assert self.__shared is not None, "server_activate() has not run"
        request.setblocking(False)
        connection = Connection(self, self.__shared, request, client_address)
        if connection.handler.disable_nagle_algorithm and request.family != socket.AF_UNIX:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.ready(0)  # register it and call connection_made()

    def service_actions(self) -> None:
        super().service_actions()
        shared, now = self.__shared, time.monotonic()
        if shared is not None and now >= shared.next_sweep:
            # A sweep is O(connections): a few per idle period, not one per event.
            shared.next_sweep = now + min((self.idle_timeout or 4.0) / 4, 1.0)
            for connection in list(shared.open):
                connection.check(now, self.idle_timeout)

    def server_close(self) -> None:
        shared, self.__shared = self.__shared, None
        if shared is not None and shared.pid != os.getpid():
            for connection in shared.open:  # a forked child: they are the parent's
                connection.sock.close()
        elif shared is not None:
            self.shutdown()  # a loop running on another thread stops first
            self.pause_accepting()
            for connection in list(shared.open):
                connection.close()
            grace = self.close_grace  # None: as long as it takes
            deadline = time.monotonic() + (float("inf") if grace is None else grace)
            while shared.open and (left := deadline - time.monotonic()) > 0:
                self.poll(min(left, 60.0))
            for connection in list(shared.open):
                connection.abort(TimeoutError(f"unsent after close_grace={grace} s"))
            self.poll(0)  # their connection_lost calls
        super().server_close()


class BusyPollSelector(selectors.DefaultSelector):
    """The default selector, polling without sleeping for ``busy_poll`` seconds after a
    ``select()`` that found something, before it blocks.

    When ``select`` blocks, the thread's CPU goes idle, and waking it again takes the
    kernel (and, in a virtual machine, the hypervisor) tens of microseconds -- more than
    a small request costs to serve.  A client that answers quickly then finds the loop
    awake.  The price: up to ``busy_poll`` seconds of CPU each time traffic pauses; an
    idle loop never spins.  Only for a server that does its work on the loop's thread
    (spinning in a threading server would compete with its handlers for the interpreter
    lock, taking it back after every ``select``).
    """

    busy_poll: float = 50e-6
    __recent = False  # the last select() found something

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.__recent and timeout != 0:
            spin = min(self.busy_poll, timeout or self.busy_poll)  # never past the timeout
            deadline = time.perf_counter() + spin
            while time.perf_counter() < deadline:
                if ready := super().select(0):
                    return ready
            timeout = timeout and timeout - spin  # what is left of it (None: no limit)
        self.__recent = bool(ready := super().select(timeout))
        return ready


class SelectorTCPServer(SelectorMixIn, TCPServer): ...


class SelectorUnixStreamServer(SelectorMixIn, UnixStreamServer): ...
