"""Layer 03 — the request pipeline, and the four concrete servers.

Design note
-----------
When the loop (layer 02) sees the listening socket readable it calls
``_handle_request_noblock``, which walks one request down a fixed path of hooks:

    get_request()                       accept: (request, client_address)
      verify_request(request, addr)     False: the request is dropped, unanswered
        process_request(request, addr)  where concurrency mix-ins take over
          finish_request(request, addr) RequestHandlerClass(request, addr, server)
          shutdown_request(request)     half-close, then close_request(request)
      handle_error(request, addr)       any Exception from process_request

Each hook is a seam.  A subclass replaces ``verify_request`` to filter clients,
``process_request`` to hand the request to a thread or a child process (layer 05),
``handle_error`` to report failures differently.  Whatever happens, every accepted
request reaches ``shutdown_request`` exactly once, so no descriptor leaks: a rejected
request is shut down at once; an ``Exception`` is reported and then the request shut
down; a ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``) shuts the request down
and propagates, so Ctrl-C still stops a server.

Errors are logged to the ``minisocket`` logger with their traceback, instead of being
printed to stderr; with no logging configured Python still prints them.

When ``accept()`` fails because the process or the system is out of descriptors
(``EMFILE``, ``ENFILE``) or memory, the listening socket stays readable and socketserver
retries at once, forever: a busy loop of failing accepts.  minisocket logs the first
failure, pauses accepting for a few milliseconds, doubling up to 0.1 s while the error
persists (a shutdown still interrupts the pause), and logs again when accepting resumes.

The concrete servers stack a socket layer (01) in front of ``BaseServer``:

    TCPServer           = StreamSocketMixIn        + BaseServer
    UDPServer           = DatagramSocketMixIn      + TCPServer
    UnixStreamServer    = UnixStreamSocketMixIn    + TCPServer
    UnixDatagramServer  = UnixDatagramSocketMixIn  + UDPServer
"""

from __future__ import annotations

import errno
import logging
import sys
from typing import Any

from .loop import ServeLoop
from .sockets import (
    DatagramSocketMixIn,
    StreamSocketMixIn,
    UnixDatagramSocketMixIn,
    UnixStreamSocketMixIn,
)
from .trace import emit

__all__ = ["BaseServer", "TCPServer", "UDPServer", "UnixStreamServer", "UnixDatagramServer"]

logger = logging.getLogger("minisocket")

# accept() failures that mean "out of resources", not "this client went away".
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_FIRST_PAUSE = 0.005
_LONGEST_PAUSE = 0.1


class BaseServer(ServeLoop):
    """The request pipeline, independent of any socket type.

    Methods for the caller: ``__init__(server_address, RequestHandlerClass)``,
    ``serve_forever``, ``shutdown``, ``handle_request``, ``server_close``, ``fileno``.

    Methods a subclass may override: ``server_bind``, ``server_activate``,
    ``get_request``, ``verify_request``, ``process_request``, ``finish_request``,
    ``shutdown_request``, ``close_request``, ``handle_error``, ``handle_timeout``,
    ``service_actions``.

    Class attributes: ``timeout`` (for ``handle_request``), ``tracer`` (pipeline
    events).  Socket layers add ``address_family``, ``socket_type``,
    ``request_queue_size``, ``allow_reuse_address``, ``allow_reuse_port``.
    """

    _accept_pause: float = 0.0

    def get_request(self) -> tuple[Any, Any]:
        """Return ``(request, client_address)``; a socket layer provides it."""
        raise NotImplementedError(f"{type(self).__name__} has no socket layer")

    def _handle_request_noblock(self) -> None:
        """Serve one request the loop found ready. Never blocks waiting for a client."""
        try:
            request, client_address = self.get_request()
        except OSError as exc:
            # Nothing to accept after all (another process took it, or the client gave
            # up), or no descriptors left: either way there is no request to serve.
            if exc.errno in _EXHAUSTED:
                self._pause_accepting(exc)
            return
        if self._accept_pause:
            self._accept_pause = 0.0
            logger.warning("accepting connections again")
        tracer = self.tracer
        accepted = self.verify_request(request, client_address)
        if tracer is not None:
            emit(tracer, "verify_request", client_address, "accepted" if accepted else "rejected")
        if not accepted:
            self.shutdown_request(request)
            return
        try:
            if tracer is not None:
                emit(tracer, "process_request", client_address)
            self.process_request(request, client_address)
        except Exception:
            self._report_error(request, client_address)
            self.shutdown_request(request)
        except BaseException:
            self.shutdown_request(request)
            raise

    def _pause_accepting(self, exc: OSError) -> None:
        if not self._accept_pause:
            logger.error("accept() failed: %s; pausing accepts until resources free up", exc)
            self._accept_pause = _FIRST_PAUSE
        else:
            self._accept_pause = min(2 * self._accept_pause, _LONGEST_PAUSE)
        if self.tracer is not None:
            emit(self.tracer, "accept_paused", None, exc.strerror or str(exc))
        self.pause(self._accept_pause)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Return False to drop the request unanswered. Default: accept everyone."""
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the request now, in this thread; mix-ins override this (layer 05)."""
        self.finish_request(request, client_address)
        self.shutdown_request(request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Run the handler: ``RequestHandlerClass(request, client_address, self)``."""
        if self.tracer is not None:
            emit(self.tracer, "finish_request", client_address)
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
        logger.error(
            "Exception occurred during processing of request from %s",
            client_address,
            exc_info=True,
        )

    def _report_error(self, request: Any, client_address: Any) -> None:
        """Trace, then call :meth:`handle_error`; every error path goes through here.

        A ``TimeoutError`` on a server with an ``idle_timeout`` is the idle timeout doing
        its job, not a failure: it is logged at INFO and ``handle_error`` is not called.
        """
        if isinstance(sys.exc_info()[1], TimeoutError) and getattr(self, "idle_timeout", None):
            if self.tracer is not None:
                emit(self.tracer, "idle_timeout", client_address)
            logger.info("closed idle connection from %s", client_address)
            return
        if self.tracer is not None:
            emit(self.tracer, "handle_error", client_address)
        self.handle_error(request, client_address)


class TCPServer(StreamSocketMixIn, BaseServer):
    """A synchronous TCP server: one request at a time, on the serving thread."""


class UDPServer(DatagramSocketMixIn, TCPServer):
    """A synchronous UDP server: each datagram is one request."""


class UnixStreamServer(UnixStreamSocketMixIn, TCPServer):
    """A synchronous Unix-domain stream server."""


class UnixDatagramServer(UnixDatagramSocketMixIn, UDPServer):
    """A synchronous Unix-domain datagram server."""
