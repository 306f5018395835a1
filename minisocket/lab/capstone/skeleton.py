"""Your own socketserver, to fill in: notebook 07, the capstone.

Replace every ``raise NotImplementedError`` below with code that does what its docstring
says, in order: 01 the listening socket, 02 the select loop, 03 the request pipeline,
04 handlers, 05 mix-ins.  Each docstring ends with the notebook section that taught it.
Everything not marked that way is given: class attributes, the empty hooks, the server
classes composed at the end.

The grader runs CPython's own ``test_socketserver`` against this file, loaded under the
name ``socketserver``.  So use the standard library only, and keep the module's public
names (those without a leading underscore) exactly the ones in ``__all__``.
"""

from __future__ import annotations

import io
import os  # noqa: F401 -- unused until you write the parts that need them
import selectors  # noqa: F401
import socket
import sys  # noqa: F401
import threading
import traceback  # noqa: F401
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "BaseServer",
    "TCPServer",
    "UDPServer",
    "UnixStreamServer",
    "UnixDatagramServer",
    "ThreadingMixIn",
    "ForkingMixIn",
    "ThreadingTCPServer",
    "ThreadingUDPServer",
    "ThreadingUnixStreamServer",
    "ThreadingUnixDatagramServer",
    "ForkingTCPServer",
    "ForkingUDPServer",
    "ForkingUnixStreamServer",
    "ForkingUnixDatagramServer",
    "BaseRequestHandler",
    "StreamRequestHandler",
    "DatagramRequestHandler",
]


# 01 · The listening socket ----------------------------------------------------------


class _Server:
    """What every server holds: an address, a handler class; ``with`` closes it. Given."""

    def __init__(self, server_address: Any, RequestHandlerClass: Callable[..., Any]) -> None:
        self.server_address = server_address
        self.RequestHandlerClass = RequestHandlerClass

    def server_activate(self) -> None:
        pass

    def server_close(self) -> None:
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server_close()


class _StreamSocket(_Server):
    """The listening socket of a stream server: create, bind, listen, accept, close."""

    address_family = socket.AF_INET
    socket_type = socket.SOCK_STREAM
    request_queue_size = 5
    allow_reuse_address = False
    allow_reuse_port = False

    def __init__(
        self,
        server_address: Any,
        RequestHandlerClass: Callable[..., Any],
        bind_and_activate: bool = True,
    ) -> None:
        """Call ``super().__init__(server_address, RequestHandlerClass)``, create
        ``self.socket`` from ``address_family`` and ``socket_type``, and, if
        ``bind_and_activate``, call ``server_bind()`` then ``server_activate()``.  If
        either raises, close the socket (``server_close()``) before re-raising: the suite
        fails to bind 1,024 times and counts what is left open.

        Notebook 01, §6: `TCPServer.__init__`.
        """
        raise NotImplementedError

    def server_bind(self) -> None:
        """Set ``SO_REUSEADDR`` if ``allow_reuse_address`` and ``SO_REUSEPORT`` if
        ``allow_reuse_port``; bind to ``server_address``; then store the address the
        kernel chose back into ``server_address`` (port 0 becomes a real port).

        Notebook 01, §2: `bind()`, port 0.
        """
        raise NotImplementedError

    def server_activate(self) -> None:
        """Listen, with a backlog of ``request_queue_size``.

        Notebook 01, §3: `listen()` and the backlog.
        """
        raise NotImplementedError

    def server_close(self) -> None:
        """Close the listening socket (afterwards ``self.socket.fileno()`` is -1).

        Notebook 01, §6: `TCPServer.__init__`.
        """
        raise NotImplementedError

    def fileno(self) -> int:
        """Return the listening socket's descriptor: what the loop's selector waits on.

        Notebook 01, §1: `socket()`.
        """
        raise NotImplementedError

    def get_request(self) -> tuple[Any, Any]:
        """Accept one connection; return ``(connected_socket, client_address)``.

        Notebook 01, §5: `accept()`.
        """
        raise NotImplementedError


class _DatagramSocket(_StreamSocket):
    """A datagram socket: bound, never listening; a request is one packet."""

    socket_type = socket.SOCK_DGRAM
    max_packet_size = 8192

    def server_activate(self) -> None:
        """Do nothing: a datagram socket does not listen.

        Notebook 01, §7: the finished layer.
        """
        raise NotImplementedError

    def get_request(self) -> tuple[Any, Any]:
        """Receive one datagram of at most ``max_packet_size`` bytes; return
        ``((data, self.socket), client_address)`` -- the handler answers through the
        server's own socket.

        Notebook 01, §7: the finished layer.
        """
        raise NotImplementedError


# 02 · The select loop ---------------------------------------------------------------


class _Loop(_Server):
    """serve_forever, shutdown and handle_request, waiting with ``selectors``."""

    timeout: float | None = None  # how long handle_request waits; None: no limit
    fileno: Callable[[], int]  # the socket layer's (01)
    _handle_request_noblock: Callable[[], None]  # the pipeline's (03)

    def __init__(self, server_address: Any, RequestHandlerClass: Callable[..., Any]) -> None:
        """Given: the state serve_forever and shutdown share."""
        super().__init__(server_address, RequestHandlerClass)
        self._shutdown_request = False  # shutdown() asks serve_forever to return
        self._is_shut_down = threading.Event()  # set while no serve_forever is running
        self._is_shut_down.set()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Until ``shutdown()`` asks it to stop: wait at most ``poll_interval`` seconds on
        a selector for the server (``self``, it has ``fileno()``) to be readable; if it is,
        and no shutdown was asked for meanwhile, call ``_handle_request_noblock()``; then
        call ``service_actions()``.  On the way out -- even by an exception -- clear the
        shutdown request and set ``_is_shut_down``, so ``shutdown()`` can return.  Clear
        ``_is_shut_down`` when you start (but not ``_shutdown_request``: a shutdown asked
        for just before the loop started must still stop it).

        Notebook 02, §3: `serve_forever`.
        """
        raise NotImplementedError

    def shutdown(self) -> None:
        """Ask ``serve_forever`` (running in another thread) to return, and wait until it
        has.

        Notebook 02, §4: how `shutdown()` waits.
        """
        raise NotImplementedError

    def service_actions(self) -> None:
        """Given: called by serve_forever once per pass; ForkingMixIn reaps children here."""

    def handle_request(self) -> None:
        """Serve one request: wait at most ``timeout`` seconds (``None``: for ever) for the
        server to be readable, then call ``_handle_request_noblock()``; if the wait timed
        out, call ``handle_timeout()`` instead.

        Notebook 02, §5: `handle_request`, `timeout` and `handle_timeout`.
        """
        raise NotImplementedError

    def handle_timeout(self) -> None:
        """Given: called by handle_request when nothing arrived in time."""


# 03 · The request pipeline ----------------------------------------------------------


class BaseServer(_Loop):
    """get_request → verify_request → process_request → finish_request → shutdown_request."""

    get_request: Callable[[], tuple[Any, Any]]  # the socket layer's (01)

    def _handle_request_noblock(self) -> None:
        """Serve the request the loop found waiting.  ``get_request()`` (return quietly on
        ``OSError``: the client may be gone), then ``verify_request()``; if it agrees,
        ``process_request()`` -- it shuts the request down itself.  Every other way out
        must call ``shutdown_request()`` exactly once: a refused request; an ``Exception``
        from ``process_request`` (after ``handle_error()``); any other exception (then
        re-raise it: ``SystemExit`` must get through).

        Notebook 03, §1: one request, traced.
        """
        raise NotImplementedError

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Given: return False to refuse the request. Default: accept everyone."""
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        """Synchronously: ``finish_request()``, then ``shutdown_request()``.

        Notebook 03, §3: the hooks in order.
        """
        raise NotImplementedError

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve the request: call ``RequestHandlerClass(request, client_address, self)``.

        Notebook 03, §3: the hooks in order.
        """
        raise NotImplementedError

    def shutdown_request(self, request: Any) -> None:
        """End the request; here, with no connection to end, just ``close_request()``.

        Notebook 03, §3: the hooks in order.
        """
        raise NotImplementedError

    def close_request(self, request: Any) -> None:
        """Given: release the request. Nothing to release here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Called inside an ``except`` block: print which client's request failed, and
        the traceback, to ``sys.stderr``.

        Notebook 03, §4: `handle_error`.
        """
        raise NotImplementedError


class TCPServer(_StreamSocket, BaseServer):
    def shutdown_request(self, request: Any) -> None:
        """Half-close the connection (``shutdown(SHUT_WR)``: the client reads end of file
        even while a forked child still holds the socket; ignore ``OSError``, the client
        may be gone), then ``close_request()``.

        Notebook 03, §3: the hooks in order.
        """
        raise NotImplementedError

    def close_request(self, request: Any) -> None:
        """Close the connected socket.

        Notebook 03, §3: the hooks in order.
        """
        raise NotImplementedError


class UDPServer(_DatagramSocket, TCPServer):
    def shutdown_request(self, request: Any) -> None:
        """Given: a datagram has no connection to end."""

    def close_request(self, request: Any) -> None:
        """Given: nor a socket of its own to close."""


class UnixStreamServer(TCPServer):
    address_family = socket.AF_UNIX


class UnixDatagramServer(UDPServer):
    address_family = socket.AF_UNIX


# 04 · Request handlers --------------------------------------------------------------


class BaseRequestHandler:
    """One object per request; it does all its work in ``__init__``."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        """Store ``request``, ``client_address`` and ``server`` as attributes of the same
        names, then ``setup()``, ``handle()`` and ``finish()`` -- ``finish()`` even when
        ``handle()`` raises.

        Notebook 04, §1: the handler's life.
        """
        raise NotImplementedError

    def setup(self) -> None:
        pass

    def handle(self) -> None:
        pass

    def finish(self) -> None:
        pass


class _SocketWriter(io.BufferedIOBase):
    """An unbuffered, write-only file on a socket: ``StreamRequestHandler.wfile``."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b: ReadableBuffer) -> int:
        """Send all of ``b`` before returning (a signal must not cut it short), and return
        its length in bytes.

        Notebook 04, §3: `StreamRequestHandler`.
        """
        raise NotImplementedError

    def fileno(self) -> int:
        """The socket's descriptor.

        Notebook 04, §3: `StreamRequestHandler`.
        """
        raise NotImplementedError


class StreamRequestHandler(BaseRequestHandler):
    rbufsize = -1  # buffered reads
    wbufsize = 0  # unbuffered writes
    timeout: float | None = None
    disable_nagle_algorithm = False

    def setup(self) -> None:
        """``self.connection = self.request``; apply ``timeout`` (if not None) and
        ``disable_nagle_algorithm`` (``TCP_NODELAY``) to it; make ``self.rfile``, a
        binary file with ``rbufsize``; make ``self.wfile``: a ``_SocketWriter`` when
        ``wbufsize`` is 0, else a binary file with ``wbufsize``.

        Notebook 04, §3: `StreamRequestHandler`.
        """
        raise NotImplementedError

    def finish(self) -> None:
        """Flush ``wfile`` unless it is closed (ignore ``OSError``: the client may be
        gone), then close ``wfile`` and ``rfile``.

        Notebook 04, §3: `StreamRequestHandler`.
        """
        raise NotImplementedError


class DatagramRequestHandler(BaseRequestHandler):
    def setup(self) -> None:
        """Unpack ``self.request`` into ``self.packet`` and ``self.socket``; make
        ``self.rfile`` a file reading the packet and ``self.wfile`` an empty one.

        Notebook 04, §4: `DatagramRequestHandler`.
        """
        raise NotImplementedError

    def finish(self) -> None:
        """Send what was written to ``wfile`` back to ``client_address``, in one datagram.

        Notebook 04, §4: `DatagramRequestHandler`.
        """
        raise NotImplementedError


# 05 · Mix-ins -----------------------------------------------------------------------

# The type checker sees the mix-ins as servers, so their calls into the pipeline are
# checked; at run time they are plain classes, placed before a server in the bases.
if TYPE_CHECKING:
    _MixIn = BaseServer
else:
    _MixIn = object


class ThreadingMixIn(_MixIn):
    daemon_threads = False
    block_on_close = True
    _threads: Sequence[threading.Thread] = ()  # each server gets a list of its own

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Run in the request's thread: ``finish_request()``; on an ``Exception``,
        ``handle_error()``; in every case, ``shutdown_request()`` at the end.

        Notebook 05, §2: threads.
        """
        raise NotImplementedError

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a thread (a daemon thread if ``daemon_threads``) running
        ``process_request_thread``.  Unless ``block_on_close`` is false or the threads are
        daemons, keep it in ``self._threads`` for ``server_close`` -- and drop finished
        threads from that list as you go: the suite serves ten requests and expects fewer
        than ten threads in it.

        Notebook 05, §2: threads.
        """
        raise NotImplementedError

    def server_close(self) -> None:
        """Close the server (``super().server_close()``), then join the threads kept in
        ``self._threads``.

        Notebook 05, §2: threads.
        """
        raise NotImplementedError


class ForkingMixIn(_MixIn):
    timeout: float | None = 300
    active_children: set[int] | None = None  # the pids of running children
    max_children = 40
    block_on_close = True

    def collect_children(self, *, blocking: bool = False) -> None:
        """Reap finished children: ``os.waitpid`` on each pid in ``active_children``
        (never ``-1``: other children of this process are not yours), removing those that
        have exited (``ChildProcessError``: already gone).  Wait for them if ``blocking``,
        or while there are ``max_children`` or more; otherwise use ``os.WNOHANG``.

        Notebook 05, §3: processes.
        """
        raise NotImplementedError

    def handle_timeout(self) -> None:
        self.collect_children()

    def service_actions(self) -> None:
        self.collect_children()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Fork.  The parent adds the child's pid to ``active_children`` (a set; create
        it on first use) and closes its copy of the request (``close_request()``).  The
        child serves it as ``process_request_thread`` does, then ends with
        ``os._exit(0)``, or ``os._exit(1)`` if it failed -- never returning into the loop.

        Notebook 05, §3: processes.
        """
        raise NotImplementedError

    def server_close(self) -> None:
        """Close the server (``super().server_close()``), then collect the children,
        waiting for them if ``block_on_close``.

        Notebook 05, §3: processes.
        """
        raise NotImplementedError


class ThreadingTCPServer(ThreadingMixIn, TCPServer):
    pass


class ThreadingUDPServer(ThreadingMixIn, UDPServer):
    pass


class ThreadingUnixStreamServer(ThreadingMixIn, UnixStreamServer):
    pass


class ThreadingUnixDatagramServer(ThreadingMixIn, UnixDatagramServer):
    pass


class ForkingTCPServer(ForkingMixIn, TCPServer):
    pass


class ForkingUDPServer(ForkingMixIn, UDPServer):
    pass


class ForkingUnixStreamServer(ForkingMixIn, UnixStreamServer):
    pass


class ForkingUnixDatagramServer(ForkingMixIn, UnixDatagramServer):
    pass
