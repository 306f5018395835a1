"""Layer 05 — concurrency mix-ins, and the composed servers.

Design note
-----------
A synchronous server serves one request at a time on the loop's thread: a slow client
holds up everyone behind it.  The cure is to hand the request to someone else in
``process_request`` and return to the loop at once.  A mix-in placed *before* the
server class in the bases overrides that one hook (Python's MRO finds it first):

    class ThreadingTCPServer(ThreadingMixIn, TCPServer): pass

    ThreadingTCPServer -> ThreadingMixIn -> TCPServer -> StreamSocketMixIn
                       -> BaseServer -> ServeLoop -> ServerBase -> object

``ThreadingMixIn`` starts a thread per request.  ``daemon_threads`` (default false)
decides whether those threads may outlive the interpreter; with ``block_on_close``
(default true) ``server_close`` waits for the non-daemon ones.  The threads are kept in
``_threads``, a list that drops finished threads whenever it has doubled in size, so a
long-running server does not accumulate dead Thread objects.

``ForkingMixIn`` forks a child per request; the parent closes its copy of the
connection and reaps children in ``service_actions``.  At ``max_children`` it waits
until one of *its own* children exits -- it never calls ``waitpid(-1)``, which would
reap (and steal the exit status of) a child some other part of the program started --
and a ``shutdown()`` interrupts that wait.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .pipeline import BaseServer, TCPServer, UDPServer, UnixDatagramServer, UnixStreamServer

__all__ = [
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
]

# Mix-ins are plain classes at run time (as in socketserver); for the type checker they
# are BaseServers, so calls to the pipeline's hooks are checked.
if TYPE_CHECKING:
    _MixInBase = BaseServer
else:
    _MixInBase = object


class _ThreadList(list[threading.Thread]):
    """Request threads to join on close; finished ones are dropped as the list grows."""

    def __init__(self) -> None:
        super().__init__()
        self._reap_at = 8

    def append(self, thread: threading.Thread) -> None:
        if len(self) >= self._reap_at:
            self[:] = [t for t in self if t.is_alive()]
            self._reap_at = max(8, 2 * len(self))
        super().append(thread)

    def join_all(self) -> None:
        while self:
            self.pop().join()


class ThreadingMixIn(_MixInBase):
    """Serve each request in a new thread.

    ``daemon_threads``: request threads do not keep the interpreter alive.
    ``block_on_close``: ``server_close`` joins the request threads still running
    (ignored for daemon threads).
    """

    daemon_threads: bool = False
    block_on_close: bool = True
    # Empty until the first tracked thread; then the instance's own _ThreadList.
    _threads: Sequence[threading.Thread] = ()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address)
        )
        thread.daemon = self.daemon_threads
        if self.block_on_close and not thread.daemon:
            threads: _ThreadList | None = self.__dict__.get("_threads")
            if threads is None:
                threads = self._threads = _ThreadList()
            threads.append(thread)
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """The request thread's body: the pipeline's finish/error/shutdown steps."""
        try:
            self.finish_request(request, client_address)
        except Exception:
            self._report_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        threads: _ThreadList | None = self.__dict__.get("_threads")
        if threads is not None:
            threads.join_all()


class ForkingMixIn(_MixInBase):
    """Serve each request in a child process (POSIX only).

    ``max_children``: at this many live children, wait for one to exit before
    serving more.  ``timeout``: ``handle_request`` wakes at least this often to reap.
    ``block_on_close``: ``server_close`` waits for every child.  ``active_children`` is
    the set of live child pids (``None`` before the first fork).
    """

    timeout: float | None = 300
    active_children: set[int] | None = None
    max_children: int = 40
    block_on_close: bool = True

    def collect_children(self, *, blocking: bool = False) -> None:
        """Reap finished children; at ``max_children``, wait until one finishes."""
        children = self.active_children
        if not children:
            return
        self._reap(children, blocking=blocking)
        while len(children) >= self.max_children and not self._shutdown_requested:
            self.pause(0.005)  # a shutdown() ends the wait early
            self._reap(children, blocking=False)

    @staticmethod
    def _reap(children: set[int], *, blocking: bool) -> None:
        flags = 0 if blocking else os.WNOHANG
        for pid in list(children):
            try:
                reaped, _status = os.waitpid(pid, flags)
            except ChildProcessError:
                reaped = pid  # already reaped elsewhere: it is gone all the same
            if reaped:
                children.discard(pid)

    def handle_timeout(self) -> None:
        self.collect_children()

    def service_actions(self) -> None:
        super().service_actions()
        self.collect_children()

    def process_request(self, request: Any, client_address: Any) -> None:
        pid = os.fork()
        if pid:
            if self.active_children is None:
                self.active_children = set()
            self.active_children.add(pid)
            self.close_request(request)  # the child has its own copy
            return
        # In the child: serve, then leave without running the parent's cleanup code
        # (atexit handlers, finally blocks up the stack, buffered stdio of the parent).
        status = 1
        try:
            self.finish_request(request, client_address)
            status = 0
        except Exception:
            self._report_error(request, client_address)
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
