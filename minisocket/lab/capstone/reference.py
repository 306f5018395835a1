"""A reference solution for the capstone: a socketserver kept small, which passes CPython's
own ``test_socketserver``.

It is the skeleton (``skeleton.py`` beside this file) filled in, in the same order:
01 the listening socket, 02 the select loop, 03 the request pipeline, 04 handlers,
05 mix-ins.  Standalone on purpose: the standard library only, none of minisocket's
extras (no wake-up socket, no tracing, no idle timeouts).  The grader loads it under the
name ``socketserver``.
"""

from __future__ import annotations

import io
import os
import selectors
import socket
import sys
import threading
import traceback
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
    """What every server holds: an address, a handler class; ``with`` closes it."""

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
        super().__init__(server_address, RequestHandlerClass)
        self.socket = socket.socket(self.address_family, self.socket_type)
        if bind_and_activate:
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()  # a failed bind must not leak the descriptor
                raise

    def server_bind(self) -> None:
        if self.allow_reuse_address:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.allow_reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()  # port 0 becomes a real port

    def server_activate(self) -> None:
        self.socket.listen(self.request_queue_size)

    def server_close(self) -> None:
        self.socket.close()

    def fileno(self) -> int:
        return self.socket.fileno()

    def get_request(self) -> tuple[Any, Any]:
        return self.socket.accept()


class _DatagramSocket(_StreamSocket):
    """A datagram socket: bound, never listening; a request is one packet."""

    socket_type = socket.SOCK_DGRAM
    max_packet_size = 8192

    def server_activate(self) -> None:
        pass

    def get_request(self) -> tuple[Any, Any]:
        data, client_address = self.socket.recvfrom(self.max_packet_size)
        return (data, self.socket), client_address


# 02 · The select loop ---------------------------------------------------------------


class _Loop(_Server):
    """serve_forever, shutdown and handle_request, waiting with ``selectors``."""

    timeout: float | None = None
    fileno: Callable[[], int]  # the socket layer's (01)
    _handle_request_noblock: Callable[[], None]  # the pipeline's (03)

    def __init__(self, server_address: Any, RequestHandlerClass: Callable[..., Any]) -> None:
        super().__init__(server_address, RequestHandlerClass)
        self._shutdown_request = False
        self._is_shut_down = threading.Event()
        self._is_shut_down.set()  # no serve_forever is running

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._is_shut_down.clear()
        try:
            with selectors.PollSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                while not self._shutdown_request:
                    if selector.select(poll_interval) and not self._shutdown_request:
                        self._handle_request_noblock()
                    self.service_actions()
        finally:
            self._shutdown_request = False
            self._is_shut_down.set()

    def shutdown(self) -> None:
        self._shutdown_request = True
        self._is_shut_down.wait()

    def service_actions(self) -> None:
        pass

    def handle_request(self) -> None:
        with selectors.PollSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            if selector.select(self.timeout):
                self._handle_request_noblock()
            else:
                self.handle_timeout()

    def handle_timeout(self) -> None:
        pass


# 03 · The request pipeline ----------------------------------------------------------


class BaseServer(_Loop):
    """get_request → verify_request → process_request → finish_request → shutdown_request."""

    get_request: Callable[[], tuple[Any, Any]]  # the socket layer's (01)

    def _handle_request_noblock(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError:
            return  # nothing to accept after all
        try:
            if self.verify_request(request, client_address):
                self.process_request(request, client_address)  # it shuts the request down
                return
        except Exception:
            self.handle_error(request, client_address)
        except BaseException:
            self.shutdown_request(request)
            raise
        self.shutdown_request(request)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        self.finish_request(request, client_address)
        self.shutdown_request(request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.RequestHandlerClass(request, client_address, self)

    def shutdown_request(self, request: Any) -> None:
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        print(f"Exception while serving a request from {client_address}:", file=sys.stderr)
        traceback.print_exc()


class TCPServer(_StreamSocket, BaseServer):
    def shutdown_request(self, request: Any) -> None:
        try:
            request.shutdown(socket.SHUT_WR)  # the client reads EOF even if a child holds it
        except OSError:
            pass  # the client is already gone
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        request.close()


class UDPServer(_DatagramSocket, TCPServer):
    def shutdown_request(self, request: Any) -> None:
        pass  # a datagram has no connection to end

    def close_request(self, request: Any) -> None:
        pass


class UnixStreamServer(TCPServer):
    address_family = socket.AF_UNIX


class UnixDatagramServer(UDPServer):
    address_family = socket.AF_UNIX


# 04 · Request handlers --------------------------------------------------------------


class BaseRequestHandler:
    """One object per request; it does all its work in ``__init__``."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def setup(self) -> None:
        pass

    def handle(self) -> None:
        pass

    def finish(self) -> None:
        pass


class _SocketWriter(io.BufferedIOBase):
    """An unbuffered, write-only file whose ``write`` sends everything."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b: ReadableBuffer) -> int:
        self._sock.sendall(b)
        with memoryview(b) as view:
            return view.nbytes

    def fileno(self) -> int:
        return self._sock.fileno()


class StreamRequestHandler(BaseRequestHandler):
    rbufsize = -1  # buffered reads
    wbufsize = 0  # unbuffered writes
    timeout: float | None = None
    disable_nagle_algorithm = False

    def setup(self) -> None:
        self.connection = self.request
        if self.timeout is not None:
            self.connection.settimeout(self.timeout)
        if self.disable_nagle_algorithm:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        self.rfile = self.connection.makefile("rb", self.rbufsize)
        self.wfile: io.BufferedIOBase
        if self.wbufsize == 0:
            self.wfile = _SocketWriter(self.connection)
        else:
            self.wfile = self.connection.makefile("wb", self.wbufsize)

    def finish(self) -> None:
        if not self.wfile.closed:
            try:
                self.wfile.flush()
            except OSError:
                pass  # the client is gone; there is no one left to tell
        self.wfile.close()
        self.rfile.close()


class DatagramRequestHandler(BaseRequestHandler):
    def setup(self) -> None:
        self.packet, self.socket = self.request
        self.rfile = io.BytesIO(self.packet)
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        self.socket.sendto(self.wfile.getvalue(), self.client_address)


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
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address)
        )
        thread.daemon = self.daemon_threads
        if self.block_on_close and not self.daemon_threads:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def server_close(self) -> None:
        super().server_close()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join()


class ForkingMixIn(_MixIn):
    timeout: float | None = 300
    active_children: set[int] | None = None
    max_children = 40
    block_on_close = True

    def collect_children(self, *, blocking: bool = False) -> None:
        children = self.active_children or set()
        for pid in list(children):
            wait = blocking or len(children) >= self.max_children
            try:
                finished, _ = os.waitpid(pid, 0 if wait else os.WNOHANG)
            except ChildProcessError:
                finished = pid  # already reaped
            if finished:
                children.discard(pid)

    def handle_timeout(self) -> None:
        self.collect_children()

    def service_actions(self) -> None:
        self.collect_children()

    def process_request(self, request: Any, client_address: Any) -> None:
        pid = os.fork()
        if pid:  # the parent: remember the child, let go of the connection
            if self.active_children is None:
                self.active_children = set()
            self.active_children.add(pid)
            self.close_request(request)
            return
        status = 1  # the child: serve, then leave without returning into the loop
        try:
            self.finish_request(request, client_address)
            status = 0
        except Exception:
            self.handle_error(request, client_address)
        finally:
            try:
                self.shutdown_request(request)
            finally:
                os._exit(status)

    def server_close(self) -> None:
        super().server_close()
        self.collect_children(blocking=self.block_on_close)


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
