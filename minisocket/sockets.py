"""Layer 01 — the listening socket: create, configure, bind, listen, accept.

Design note
-----------
A socketserver server is three independent choices stacked as classes: the address
family and socket type (this layer), the way requests are served (the loop and the
pipeline, layers 02-03) and the concurrency (mix-ins, layer 05).  This module holds the
first choice only, as mix-ins that know nothing about loops or handlers:

    ServerBase                   the address, the handler class, close, ``with``
    StreamSocketMixIn            TCP: socket(), setsockopt, bind, listen, accept
      DatagramSocketMixIn        UDP: bind, recvfrom; no listen, no accept
      UnixSocketFileMixIn        AF_UNIX: a path, removed again on close
        UnixStreamSocketMixIn    AF_UNIX + SOCK_STREAM
        UnixDatagramSocketMixIn  AF_UNIX + SOCK_DGRAM (also a DatagramSocketMixIn)

``TCPServer`` (layer 03) is ``StreamSocketMixIn`` placed in front of ``BaseServer``, so
its MRO reads like the layer stack.  The hooks keep socketserver's names and contracts:
``server_bind`` binds and records the real address (port 0 becomes a port number),
``server_activate`` listens, ``get_request`` returns ``(request, client_address)``,
``shutdown_request`` ends one conversation and ``close_request`` frees it.

Where minisocket differs, on purpose:

* ``request_queue_size`` defaults to ``socket.SOMAXCONN`` instead of 5.  With a backlog
  of 5, a burst of a few simultaneous connects overflows the accept queue and the
  kernel drops SYNs: those clients stall for a retransmission timeout (about 1 s).
  CPython 3.15 makes the same change.
* An IPv6 literal such as ``('::1', 0)`` selects ``AF_INET6`` when the class kept the
  default ``AF_INET``; socketserver fails with ``gaierror``.
* A Unix-domain server removes the socket file it created when it closes, so the same
  path can be bound again (set ``unlink_on_close = False`` to keep it).
* A datagram larger than ``max_packet_size`` is reported and dropped instead of being
  handed over silently truncated.
* ``idle_timeout`` bounds how long a stream connection may stay silent.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .trace import Tracer, emit

__all__ = [
    "ServerBase",
    "StreamSocketMixIn",
    "DatagramSocketMixIn",
    "DatagramTruncated",
    "UnixSocketFileMixIn",
    "UnixStreamSocketMixIn",
    "UnixDatagramSocketMixIn",
    "family_for_address",
]

RequestHandlerFactory = Callable[..., Any]

logger = logging.getLogger("minisocket")
_MSG_TRUNC = getattr(socket, "MSG_TRUNC", 0)


def family_for_address(address: Any, default: int) -> int:
    """Return ``AF_INET6`` for a ``(host, port, ...)`` whose host is an IPv6 literal.

    Anything else -- hostnames, IPv4 literals, Unix paths -- keeps *default*: resolving
    names is the caller's business, and guessing would make binding depend on DNS.
    """
    if default != socket.AF_INET or not isinstance(address, tuple) or not address:
        return default
    host = address[0]
    if not isinstance(host, str) or ":" not in host:
        return default
    try:
        ipaddress.IPv6Address(host.split("%", 1)[0])  # allow a scope: 'fe80::1%eth0'
    except ValueError:
        return default
    return socket.AF_INET6


class ServerBase:
    """What every server has before it has a loop: an address and a handler class.

    ``server_address`` is what the caller asked for until a socket layer binds, then
    what the kernel chose.  ``RequestHandlerClass`` is called as
    ``RequestHandlerClass(request, client_address, server)`` once per request (layer
    03).  ``tracer``, when set, receives a :class:`~minisocket.trace.TraceEvent` for
    each step.  Servers are context managers: leaving the ``with`` block calls
    :meth:`server_close`.
    """

    tracer: Tracer | None = None

    def __init__(self, server_address: Any, RequestHandlerClass: RequestHandlerFactory) -> None:
        self.server_address = server_address
        self.RequestHandlerClass = RequestHandlerClass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.server_address!r}>"

    def fileno(self) -> int:
        """The descriptor the loop waits on; socket layers return their socket's."""
        raise NotImplementedError(f"{type(self).__name__} has no socket to wait on")

    def server_activate(self) -> None:
        """Start accepting requests (``listen`` for stream sockets). Called by __init__."""

    def server_close(self) -> None:
        """Release everything the server holds. Safe to call more than once."""

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server_close()


class StreamSocketMixIn(ServerBase):
    """A listening TCP socket. Place it before a server base: ``(StreamSocketMixIn, Base)``.

    Class attributes a subclass may tune:

    ``address_family``        ``AF_INET`` (an IPv6 literal address selects ``AF_INET6``)
    ``socket_type``           ``SOCK_STREAM``
    ``request_queue_size``    the ``listen`` backlog, ``socket.SOMAXCONN``
    ``allow_reuse_address``   set ``SO_REUSEADDR`` so a restart can bind at once
    ``allow_reuse_port``      set ``SO_REUSEPORT`` so several servers share a port
    ``idle_timeout``          seconds a connection may stay silent (``None``: forever)

    ``idle_timeout`` becomes each accepted socket's timeout, so a blocking handler's
    read raises ``TimeoutError`` when its client has been idle that long; the server
    logs it at INFO and closes the connection.  (A handler's own ``timeout`` wins.)
    The event-driven server closes idle connections itself.  Without it, one idle
    client holds a synchronous server, a pool worker or a thread for as long as it
    likes.
    """

    address_family: int = socket.AF_INET
    socket_type: int = socket.SOCK_STREAM
    request_queue_size: int = socket.SOMAXCONN
    allow_reuse_address: bool = False
    allow_reuse_port: bool = False
    idle_timeout: float | None = None

    socket: socket.socket

    def __init__(
        self,
        server_address: Any,
        RequestHandlerClass: RequestHandlerFactory,
        bind_and_activate: bool = True,
    ) -> None:
        super().__init__(server_address, RequestHandlerClass)
        family = family_for_address(server_address, self.address_family)
        if family != self.address_family:
            self.address_family = family
        self.socket = socket.socket(self.address_family, self.socket_type)
        if bind_and_activate:
            # A failed bind (address in use, bad port) must not leak the descriptor.
            try:
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

    def server_activate(self) -> None:
        """Listen, with a backlog of ``request_queue_size`` pending connections."""
        self.socket.listen(self.request_queue_size)

    def server_close(self) -> None:
        """Close the listening socket; connections already accepted are not touched."""
        self.socket.close()
        super().server_close()

    def fileno(self) -> int:
        return self.socket.fileno()

    def get_request(self) -> tuple[Any, Any]:
        """Accept one connection: ``(connected_socket, client_address)``.

        Raises ``OSError`` when there is nothing to accept (``BlockingIOError`` on a
        non-blocking socket) or the accept failed; the pipeline decides what to do.
        """
        request, client_address = self.socket.accept()
        if self.idle_timeout is not None:
            request.settimeout(self.idle_timeout)
        if self.tracer is not None:
            emit(self.tracer, "get_request", client_address)
        return request, client_address

    def shutdown_request(self, request: Any) -> None:
        """End one conversation: half-close so the peer reads EOF, then close."""
        if self.tracer is not None:
            emit(self.tracer, "shutdown_request")
        try:
            # Sends FIN after any queued data; close() alone could reset the connection
            # if the handler left unread input behind.
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the peer may already be gone (ENOTCONN); closing is all that is left
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Release one connection's descriptor."""
        if self.tracer is not None:
            emit(self.tracer, "close_request")
        request.close()


class DatagramTruncated(OSError):
    """A datagram was larger than ``max_packet_size``; its tail is lost."""


class DatagramSocketMixIn(StreamSocketMixIn):
    """A bound UDP socket: each datagram is one request, replies go back with sendto.

    A request is ``(data, server_socket)``; there is no connection to shut down or
    close, and no ``listen``.  ``max_packet_size`` is the receive buffer size.

    A datagram larger than ``max_packet_size`` does not fit: the kernel drops its tail.
    socketserver hands the truncated bytes to the handler as if nothing happened.
    minisocket reads with ``recvmsg``, which reports the truncation (``MSG_TRUNC``),
    logs it, counts it in ``truncated`` and drops the datagram -- half a request is not
    a request (set ``drop_truncated = False`` to deliver it anyway, still logged).
    """

    socket_type: int = socket.SOCK_DGRAM
    allow_reuse_address: bool = False
    max_packet_size: int = 8192
    drop_truncated: bool = True
    truncated: int = 0

    def server_activate(self) -> None:
        """Datagram sockets do not listen: binding is enough to receive."""

    def get_request(self) -> tuple[Any, Any]:
        data, _ancillary, flags, client_address = self.socket.recvmsg(self.max_packet_size)
        if flags & _MSG_TRUNC:
            self.truncated += 1
            logger.warning(
                "datagram from %s is larger than max_packet_size (%d bytes): %s",
                client_address,
                self.max_packet_size,
                "dropped" if self.drop_truncated else "delivered truncated",
            )
            if self.tracer is not None:
                emit(
                    self.tracer,
                    "truncated",
                    client_address,
                    f"max_packet_size={self.max_packet_size}",
                )
            if self.drop_truncated:
                # An OSError tells the pipeline there is no request to serve.
                raise DatagramTruncated(f"datagram from {client_address} truncated")
        if self.tracer is not None:
            emit(self.tracer, "get_request", client_address, f"{len(data)} bytes")
        return (data, self.socket), client_address

    def shutdown_request(self, request: Any) -> None:
        """There is no conversation to end: just release the request."""
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """The socket is shared by every client: nothing to close per request."""
        if self.tracer is not None:
            emit(self.tracer, "close_request")


class UnixSocketFileMixIn(StreamSocketMixIn):
    """Unix-domain sockets bound to a filesystem path, removed again on close.

    ``unlink_on_close`` (default true): on close, remove the socket file this server
    created, but only if it is still the same file (same device and inode), so a server
    never deletes a path that someone else has bound since.  socketserver leaves the
    file behind, and binding the same path again fails with ``EADDRINUSE``.
    """

    address_family: int = getattr(socket, "AF_UNIX", -1)
    unlink_on_close: bool = True
    _bound_path_identity: tuple[str, int, int] | None = None

    def server_bind(self) -> None:
        super().server_bind()
        path = self.server_address
        # Abstract-namespace addresses (a leading NUL) have no file to remove.
        if isinstance(path, (str, bytes)) and path and path[:1] not in ("\0", b"\0"):
            st = os.stat(path)
            self._bound_path_identity = (os.fsdecode(path), st.st_dev, st.st_ino)

    def server_close(self) -> None:
        super().server_close()
        identity, self._bound_path_identity = self._bound_path_identity, None
        if identity is None or not self.unlink_on_close:
            return
        path, dev, ino = identity
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == (dev, ino):
                os.unlink(path)
        except OSError:
            pass  # already removed, or not ours to remove


class UnixStreamSocketMixIn(UnixSocketFileMixIn):
    """A Unix-domain stream socket: ``AF_UNIX`` + ``SOCK_STREAM``."""


class UnixDatagramSocketMixIn(UnixSocketFileMixIn, DatagramSocketMixIn):
    """A Unix-domain datagram socket: ``AF_UNIX`` + ``SOCK_DGRAM``."""
