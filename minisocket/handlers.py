"""Layer 04 — request handlers: the object that talks to one client.

Design note
-----------
The server creates one handler per request and the handler does all its work in its
constructor: ``setup()``, then ``handle()``, then ``finish()`` -- ``finish`` runs even
when ``handle`` raises, so per-request resources are always released.  The handler sees
``request`` (a connected socket for stream servers, ``(data, server_socket)`` for
datagram servers), ``client_address`` and ``server``.

``StreamRequestHandler`` wraps the connection in two file objects: ``rfile`` (buffered
reads; ``readline`` returns ``b''`` at end of file) and ``wfile`` (unbuffered by
default: every ``write`` is handed to the kernel before it returns, which is what
interactive protocols expect).  The unbuffered ``wfile`` is a small ``BufferedIOBase``
that sends until the kernel has taken everything: a raw ``SocketIO`` may write only part
of the buffer, and a caller who ignores the count would silently lose the rest.

``DatagramRequestHandler`` offers the same two files over one datagram: ``rfile``
reads the packet, and whatever was written to ``wfile`` goes back to the sender in one
datagram when the handler finishes.  Unlike socketserver, nothing is sent when the
handler wrote nothing (set ``send_empty_reply = True`` for the old behaviour).

The classic mistake with ``BaseRequestHandler`` is to loop on ``recv()`` until an
exception: a closed connection is not an exception, it is ``recv()`` returning ``b''``,
forever, as fast as the CPU allows.  Notebook 04 shows it spinning.
"""

from __future__ import annotations

import io
import socket
from typing import TYPE_CHECKING, Any, cast

from .sockets import reset
from .trace import emit

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class BaseRequestHandler:
    """Serve one request: ``setup()``, ``handle()``, ``finish()``, all from ``__init__``.

    Override ``handle`` (and ``setup``/``finish`` for per-request resources).  The
    server shuts the request down after the constructor returns; a handler does not
    close ``request`` itself.
    """

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        self.request, self.client_address, self.server = request, client_address, server
        emit(server, "setup", client_address)
        self.setup()
        try:
            emit(server, "handle", client_address)
            self.handle()
        finally:
            emit(server, "finish", client_address)
            self.finish()

    def setup(self) -> None:
        """Prepare per-request state. Called before :meth:`handle`."""

    def handle(self) -> None:
        """Talk to the client. The default does nothing."""

    def finish(self) -> None:
        """Release per-request state. Called after :meth:`handle`, even if it raised."""


class SocketWriter(io.BufferedIOBase):
    """A write-only file on a socket whose ``write`` sends everything or raises.

    ``write`` returns the full length of the data, as ``BufferedIOBase`` promises, and
    there is nothing to flush.  It sends piece by piece, so a socket timeout (the
    server's ``idle_timeout``, the handler's ``timeout``) bounds how long the client may
    take *no* data -- ``sendall`` would bound the whole reply, and cut off a client that
    is steadily reading a large one.  When the timeout does strike, the reply is cut
    short, so the connection is set to end with a reset: the client sees an error, not
    a clean end after half a reply.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b: ReadableBuffer) -> int:
        with memoryview(b) as view, view.cast("B") as data:
            try:
                while data:
                    data = data[self._sock.send(data) :]
            except TimeoutError:
                reset(self._sock)
                raise
            return view.nbytes

    def fileno(self) -> int:
        return self._sock.fileno()


class LineTooLong(ValueError):
    """``rfile.readline()`` found no newline within the handler's ``max_line_length``."""


class LineLimitedReader(io.BufferedReader):
    """A buffered reader whose ``readline`` (and line iteration) refuses long lines.

    ``readline()`` with no size, or a size above *limit*, reads at most *limit* + 1
    bytes and raises :class:`LineTooLong` if no newline came within *limit*.  A client
    can then no longer make a handler buffer an endless line in memory.
    """

    def __init__(self, raw: io.RawIOBase, limit: int, buffer_size: int) -> None:
        super().__init__(raw, buffer_size)
        self.limit = limit

    def readline(self, size: int | None = -1) -> bytes:
        wanted = self.limit + 1 if size is None or size < 0 or size > self.limit else size
        line = super().readline(wanted)
        if len(line) > self.limit and not line.endswith(b"\n"):
            raise LineTooLong(f"no newline within {self.limit} bytes")
        return line


class StreamRequestHandler(BaseRequestHandler):
    """A handler with file objects ``rfile`` and ``wfile`` on the connection.

    Class attributes:

    ``rbufsize``                 buffer size for ``rfile``; -1 means the default
    ``wbufsize``                 0 (default): ``wfile`` writes straight to the socket
    ``timeout``                  a socket timeout for the connection, or ``None``
    ``disable_nagle_algorithm``  set ``TCP_NODELAY``, so small writes are not delayed
    ``max_line_length``          ``rfile.readline()`` raises :class:`LineTooLong` past
                                 this many bytes without a newline (``None``: no limit,
                                 as in socketserver, where one endless line from a
                                 client fills the server's memory)
    """

    rbufsize: int = -1
    wbufsize: int = 0
    timeout: float | None = None
    disable_nagle_algorithm: bool = False
    max_line_length: int | None = None

    connection: socket.socket
    rfile: io.BufferedIOBase
    wfile: io.BufferedIOBase

    def setup(self) -> None:
        self.connection = self.request
        if self.timeout is not None:
            self.connection.settimeout(self.timeout)
        if self.disable_nagle_algorithm:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        if self.max_line_length is None:
            self.rfile = cast(io.BufferedIOBase, self.connection.makefile("rb", self.rbufsize))
        else:
            raw = cast(io.RawIOBase, self.connection.makefile("rb", 0))
            size = self.rbufsize if self.rbufsize > 0 else io.DEFAULT_BUFFER_SIZE
            self.rfile = LineLimitedReader(raw, self.max_line_length, size)
        if self.wbufsize == 0:
            self.wfile = SocketWriter(self.connection)
        else:
            self.wfile = cast(io.BufferedIOBase, self.connection.makefile("wb", self.wbufsize))

    def finish(self) -> None:
        if not self.wfile.closed:
            try:
                self.wfile.flush()
            except OSError:
                pass  # the client is gone (ECONNRESET, EPIPE): nothing left to deliver
        self.wfile.close()
        self.rfile.close()


class DatagramRequestHandler(BaseRequestHandler):
    """A handler for one datagram, with ``rfile``/``wfile`` as in-memory files.

    ``packet`` is the datagram, ``socket`` the server's socket.  What the handler
    writes to ``wfile`` is sent back to ``client_address`` in one datagram by
    :meth:`finish` -- or nothing at all if it wrote nothing, unless
    ``send_empty_reply`` is true.
    """

    send_empty_reply: bool = False

    packet: bytes
    socket: socket.socket
    rfile: io.BytesIO
    wfile: io.BytesIO

    def setup(self) -> None:
        self.packet, self.socket = self.request
        self.rfile = io.BytesIO(self.packet)
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        reply = self.wfile.getvalue()
        if reply or self.send_empty_reply:
            self.socket.sendto(reply, self.client_address)
