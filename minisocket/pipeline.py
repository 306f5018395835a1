"""Layer 03 — the request pipeline (``BaseServer``) and the servers that own a socket.

Design note
-----------
When the loop (layer 02) finds the listening socket readable it calls
``_handle_request_noblock``, which walks one request down a fixed path of hooks:

    get_request()                       accept: (request, client_address)
      verify_request(request, addr)     False: the request is dropped, unanswered
        process_request(request, addr)  where concurrency mix-ins take over
          finish_request(request, addr) RequestHandlerClass(request, addr, server)
          shutdown_request(request)     half-close, then close_request(request)
      handle_error(request, addr)       any Exception from process_request

Each hook is a seam.  A subclass replaces ``verify_request`` to filter clients,
``process_request`` to hand the request to a thread or a child process (layer 05),
``handle_error`` to report failures differently.  An accepted request is ended by
``shutdown_request``: a rejected one at once; after an ``Exception`` from
``process_request``, once it is reported; after a ``BaseException`` (``SystemExit``,
``KeyboardInterrupt``), before it propagates, so Ctrl-C still stops a server.  (As in
socketserver, an exception from ``verify_request`` itself escapes, and the request with it.)

Errors are logged to the ``minisocket`` logger with their traceback, instead of being
printed to stderr; with no logging configured Python still prints them.

When ``accept()`` fails because the process or the system is out of descriptors
(``EMFILE``, ``ENFILE``) or memory, the listening socket stays readable and socketserver
retries at once, forever: a busy loop of failing accepts.  minisocket logs the first
failure and stops *accepting* -- only accepting: connections already open are still
served -- for 5 ms, doubling up to 0.1 s while the error persists, and logs again when
accepting resumes.

The servers are socketserver's, with the socket code in ``TCPServer`` (the facts it
rests on are layer 01); the others change a few attributes and methods:

    TCPServer(BaseServer)           UDPServer(TCPServer)
    UnixStreamServer(TCPServer)     UnixDatagramServer(UDPServer)

``idle_timeout`` (seconds, default ``None``) bounds how long a stream connection may
make no progress: it becomes each accepted socket's timeout, so a blocking handler's
read raises ``TimeoutError`` when its client has been silent that long, and the server
logs it at INFO and closes the connection.  Without it, one idle client holds a
synchronous server, a thread or a pool worker for as long as it likes.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import TYPE_CHECKING, Any

from . import sockets
from .loop import ServeLoop
from .trace import RepeatedWarning, emit, logger


class BaseServer(ServeLoop):
    """The request pipeline, independent of any socket type.

    Methods for the caller: ``__init__(server_address, RequestHandlerClass)``,
    ``serve_forever``, ``shutdown``, ``handle_request``, ``server_close``.

    Methods a subclass may override: ``server_activate``, ``verify_request``,
    ``process_request``, ``finish_request``, ``shutdown_request``, ``close_request``,
    ``handle_error``, ``handle_timeout``, ``service_actions``.

    Class attributes: ``timeout`` (for ``handle_request``), ``tracer`` (pipeline
    events).  Servers are context managers: leaving the ``with`` calls ``server_close``.
    """

    def __init__(self, server_address: Any, RequestHandlerClass: Any) -> None:
        super().__init__()
        self.server_address, self.RequestHandlerClass = server_address, RequestHandlerClass
        self.__backoff = 0.0  # seconds accepting pauses after running out of descriptors

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.server_address!r}>"

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server_close()

    def server_activate(self) -> None:
        """Start accepting requests; called by the constructor. Socket layers listen."""

    def get_request(self) -> tuple[Any, Any]:
        """Return ``(request, client_address)``; a socket layer provides it."""
        raise NotImplementedError(f"{type(self).__name__} has no socket to take requests from")

    def _handle_request_noblock(self) -> None:
        """Serve one request the loop found ready. Never blocks waiting for a client."""
        try:
            request, client_address = self.get_request()
        except OSError as exc:
            # Nothing to accept after all (another process took it, or the client gave
            # up), or no descriptors left: either way there is no request to serve.
            # accept() failures that mean "out of resources", not "the client went away"
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self.__back_off(exc)
            return
        if self.__backoff:
            self.__backoff = 0.0
            logger.warning("accepting connections again")
        accepted = self.verify_request(request, client_address)
        emit(self, "verify_request", client_address, "accepted" if accepted else "rejected")
        if not accepted:
            self.shutdown_request(request)
            return
        try:
            emit(self, "process_request", client_address)
            self.process_request(request, client_address)
        except Exception:
            emit(self, "handle_error", client_address)
            self.handle_error(request, client_address)
            self.shutdown_request(request)
        except BaseException:
            self.shutdown_request(request)
            raise

    def __back_off(self, exc: OSError) -> None:
        if not self.__backoff:
            logger.error("accept() failed: %s; pausing accepts until resources free up", exc)
        self.__backoff = min(2 * self.__backoff, 0.1) or 0.005  # 5 ms, doubling to 0.1 s
        self.pause_accepting()
        self.call_later(self.__backoff, self.resume_accepting)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Return False to drop the request unanswered. Default: accept everyone."""
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the request now, in this thread; mix-ins override this (layer 05)."""
        self.finish_request(request, client_address)
        self.shutdown_request(request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Run the handler: ``RequestHandlerClass(request, client_address, self)``."""
        emit(self, "finish_request", client_address)
        self.RequestHandlerClass(request, client_address, self)

    def shutdown_request(self, request: Any) -> None:
        """End the conversation with one client; by default just close it."""
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Release the request's resources; socket layers close the connection."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Report an exception raised while serving a request (from inside ``except``).

        Logs the traceback to the ``minisocket`` logger at ERROR; the server keeps
        serving.  Override to report elsewhere.
        """
        logger.exception("Exception occurred during processing of request from %s", client_address)


class TCPServer(BaseServer):
    """A synchronous TCP server: one request at a time, on the serving thread.

    Class attributes a subclass may tune:

    ``address_family``        ``AF_INET`` (an IPv6 literal address selects ``AF_INET6``)
    ``socket_type``           ``SOCK_STREAM``
    ``request_queue_size``    the ``listen`` backlog, ``socket.SOMAXCONN``
    ``allow_reuse_address``   set ``SO_REUSEADDR`` so a restart can bind at once
    ``allow_reuse_port``      set ``SO_REUSEPORT`` so several servers share a port
    ``idle_timeout``          seconds a connection may make no progress (``None``: forever)
    ``unlink_on_close``       a Unix-domain server removes its socket file on close
    """

    address_family: int = socket.AF_INET
    socket_type: int = socket.SOCK_STREAM
    request_queue_size: int = socket.SOMAXCONN
    allow_reuse_address: bool = False
    allow_reuse_port: bool = False
    idle_timeout: float | None = None
    unlink_on_close: bool = True
    __socket_file: sockets.SocketFile | None = None

    def __init__(
        self, server_address: Any, RequestHandlerClass: Any, bind_and_activate: bool = True
    ) -> None:
        super().__init__(server_address, RequestHandlerClass)
        self.address_family = sockets.family_for_address(server_address, self.address_family)
        self.socket = socket.socket(self.address_family, self.socket_type)
        if bind_and_activate:
            try:  # a failed bind (address in use, bad port) must not leak the descriptor
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    def server_bind(self) -> None:
        """Set the reuse options, bind, and record the address the kernel chose."""
        if self.allow_reuse_address and hasattr(socket, "SO_REUSEADDR"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.allow_reuse_port and hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.__socket_file = sockets.socket_file(self.server_address)

    def server_activate(self) -> None:
        """Listen, with a backlog of ``request_queue_size`` pending connections."""
        self.socket.listen(self.request_queue_size)

    def server_close(self) -> None:
        """Close the listening socket; connections already accepted are not touched."""
        super().server_close()
        self.socket.close()
        if self.unlink_on_close:
            sockets.remove_socket_file(self.__socket_file)

    def fileno(self) -> int:
        """The listening socket's descriptor, which the loop waits on."""
        return self.socket.fileno()

    def get_request(self) -> tuple[Any, Any]:
        """Accept one connection: ``(connected_socket, client_address)``."""
        request, client_address = self.socket.accept()
        if self.idle_timeout is not None:
            request.settimeout(self.idle_timeout)
        emit(self, "get_request", client_address)
        return request, client_address

    def shutdown_request(self, request: Any) -> None:
        """End one conversation: half-close so the peer reads EOF, then close."""
        emit(self, "shutdown_request")
        try:
            # Sends FIN after any queued data; close() alone could reset the connection
            # if the handler left unread input behind.
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the peer may already be gone (ENOTCONN); closing is all that is left
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Release one connection's descriptor."""
        emit(self, "close_request")
        request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A ``TimeoutError`` with ``idle_timeout`` set is taken for that timeout doing its
        job, not a failure: it is logged at INFO, with its message (a handler's own
        timeouts on other sockets show there too).  Anything else is logged as an error."""
        if isinstance(error := sys.exception(), TimeoutError) and self.idle_timeout is not None:
            emit(self, "idle_timeout", client_address)
            logger.info("closed idle connection from %s (%s)", client_address, error)
        else:
            super().handle_error(request, client_address)


class UDPServer(TCPServer):
    """A synchronous UDP server: each datagram is one request, ``(data, socket)``.

    ``max_packet_size`` is the receive buffer.  A longer datagram does not fit, and the
    kernel drops its tail; socketserver hands the truncated bytes to the handler as if
    nothing happened.  minisocket detects it, logs it (at most once a second, with a
    count), counts it in ``truncated`` and drops the datagram -- half a request is not a
    request (``drop_truncated = False`` delivers it anyway, still logged).
    """

    socket_type: int = socket.SOCK_DGRAM
    max_packet_size: int = 8192
    drop_truncated: bool = True
    truncated: int = 0
    __warning: RepeatedWarning | None = None

    def server_activate(self) -> None:
        """Datagram sockets do not listen: binding is enough to receive."""

    def get_request(self) -> tuple[Any, Any]:
        data, client_address, truncated = sockets.recv_datagram(self.socket, self.max_packet_size)
        if truncated:
            self.truncated += 1
            if self.__warning is None:
                self.__warning = RepeatedWarning("oversized datagrams", "%s sent over %d bytes")
            self.__warning(client_address, self.max_packet_size)
            emit(self, "truncated", client_address, f"max_packet_size={self.max_packet_size}")
            if self.drop_truncated:  # an OSError tells the pipeline there is no request
                raise sockets.DatagramTruncated(f"datagram from {client_address} truncated")
        emit(self, "get_request", client_address, f"{len(data)} bytes")
        return (data, self.socket), client_address

    def server_close(self) -> None:
        super().server_close()
        if self.__warning is not None:
            self.__warning.flush()

    def shutdown_request(self, request: Any) -> None:
        """There is no conversation to end: just release the request."""
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """The socket is shared by every client: nothing to close per request."""


class UnixStreamServer(TCPServer):
    """A synchronous Unix-domain stream server."""

    address_family: int = getattr(socket, "AF_UNIX", -1)


class UnixDatagramServer(UDPServer):
    """A synchronous Unix-domain datagram server."""

    address_family: int = getattr(socket, "AF_UNIX", -1)


# Mix-ins are plain classes at run time (as in socketserver); for the type checker they
# are TCPServers, so the hooks they call are checked.
if TYPE_CHECKING:
    MixInBase = TCPServer
else:
    MixInBase = object
