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
connection and reaps its children.  It only ever waits for *its own* children --
socketserver calls ``waitpid(-1)`` at ``max_children``, which reaps (and steals the
exit status of) any child of the process, and blocks the loop, ``shutdown()``
included, until one exits.  minisocket watches each child through a pidfd on the
loop's selector and, at ``max_children``, simply stops accepting until one exits.
"""

from __future__ import annotations

import functools
import logging
import os
import selectors
import socket
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

logger = logging.getLogger("minisocket")

_HAVE_PIDFD = hasattr(os, "pidfd_open")

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
    ``close_grace``: how long requests still being served at ``server_close`` may go
    on, in seconds, before their connections are shut down (their handlers then see
    end of file or an error, and return).  With ``block_on_close``, ``server_close``
    waits that long at most; without, it returns at once and the connections are shut
    down in the background when the grace period ends.  socketserver has no such
    bound: one idle client of a threading server makes ``server_close`` wait forever,
    and with daemon threads connections go on being served after it returns.  ``None``
    restores that.
    """

    daemon_threads: bool = False
    block_on_close: bool = True
    close_grace: float | None = 5.0
    # Empty until the first tracked thread; then the instance's own _ThreadList.
    _threads: Sequence[threading.Thread] = ()
    _live: _LiveRequests | None = None

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
        live = self._live
        if live is None:  # first request: racing threads may each make one; one wins
            live = self.__dict__.setdefault("_live", _LiveRequests())
        live.add(request)
        try:
            self.finish_request(request, client_address)
        except Exception:
            self._report_error(request, client_address)
        finally:
            self.shutdown_request(request)
            live.discard(request)

    def server_close(self) -> None:
        super().server_close()
        live, grace = self._live, self.close_grace
        if live is not None and len(live) and grace is not None:
            if self.block_on_close and not self.daemon_threads:
                live.close_after(grace)
            else:  # do not block, but do not leave the connections served forever either
                timer = threading.Timer(grace, live.close_after, args=(0.0,))
                timer.daemon = True
                timer.start()
        threads: _ThreadList | None = self.__dict__.get("_threads")
        if threads is not None:
            threads.join_all()


class _LiveRequests:
    """The requests being served right now, so ``server_close`` can end them."""

    def __init__(self) -> None:
        self._requests: set[Any] = set()
        self._changed = threading.Condition()

    def add(self, request: Any) -> None:
        with self._changed:
            self._requests.add(request)

    def discard(self, request: Any) -> None:
        with self._changed:
            self._requests.discard(request)
            self._changed.notify_all()

    def __len__(self) -> int:
        return len(self._requests)

    def close_after(self, grace: float) -> int:
        """Wait up to *grace* seconds for the requests to finish; shut down the rest.

        Returns how many connections were shut down.  Only stream sockets can be:
        a datagram request shares the server's socket, which is already closed.
        """
        with self._changed:
            self._changed.wait_for(lambda: not self._requests, timeout=grace)
            remaining = list(self._requests)
        cut = 0
        for request in remaining:
            if isinstance(request, socket.socket):
                try:
                    request.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv
                    cut += 1
                except OSError:
                    pass  # closed meanwhile
        if cut:
            logger.info(
                "server_close: shut down %d connection(s) still open after %g s", cut, grace
            )
        return cut


class ForkingMixIn(_MixInBase):
    """Serve each request in a child process (POSIX only).

    ``max_children``: at this many live children, accept no more until one exits.
    ``timeout``: ``handle_request`` wakes at least this often to reap.
    ``block_on_close``: ``server_close`` waits for every child.  ``active_children`` is
    the set of live child pids (``None`` before the first fork).

    Inside ``serve_forever`` each child gets a *pidfd* (Linux 5.3+) registered on the
    loop's selector, so the loop learns of a child's exit the moment it happens and
    reaps exactly that child.  At ``max_children`` the loop stops watching the listening
    socket -- new clients wait in the backlog -- and keeps serving everything else,
    ``shutdown()`` included; the first exit resumes accepting.  Without pidfds (or
    outside ``serve_forever``) children are reaped by polling each of *our own* pids
    with ``WNOHANG``, and at ``max_children`` the server waits for one of them, a wait
    that ``shutdown()`` interrupts.
    """

    timeout: float | None = 300
    active_children: set[int] | None = None
    max_children: int = 40
    block_on_close: bool = True
    _pidfds: dict[int, int] | None = None  # pid -> pidfd, for children the loop watches
    _accept_paused: bool = False

    def collect_children(self, *, blocking: bool = False) -> None:
        """Reap finished children that the loop does not watch; at ``max_children``
        (outside the loop), wait until one of them finishes."""
        children = self.active_children
        if not children:
            return
        watched = self._pidfds or {}
        if not blocking and len(watched) == len(children):
            return  # the loop reaps each of them when its pidfd fires: nothing to poll
        self._reap(children, watched, blocking=blocking)
        if self.loop_selector is not None and watched:
            return  # the loop pauses accepting instead of waiting (see _child_started)
        while len(children) >= self.max_children and not self._shutdown_requested:
            self.pause(0.005)  # a shutdown() ends the wait early
            self._reap(children, watched, blocking=False)

    @staticmethod
    def _reap(children: set[int], skip: dict[int, int], *, blocking: bool) -> None:
        flags = 0 if blocking else os.WNOHANG
        for pid in [p for p in children if blocking or p not in skip]:
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
            self._child_started(pid)
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

    def _child_started(self, pid: int) -> None:
        selector = self.loop_selector
        if selector is None or not _HAVE_PIDFD:
            return
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return  # the polling in service_actions will reap it
        if self._pidfds is None:
            self._pidfds = {}
        self._pidfds[pid] = pidfd
        selector.register(pidfd, selectors.EVENT_READ, functools.partial(self._child_exited, pid))
        assert self.active_children is not None
        if len(self.active_children) >= self.max_children and not self._accept_paused:
            selector.unregister(self)  # new clients wait in the backlog
            self._accept_paused = True

    def _child_exited(self, pid: int, events: int) -> None:
        """Loop callback: the child's pidfd became readable, so it has exited."""
        assert self._pidfds is not None and self.active_children is not None
        pidfd = self._pidfds.pop(pid)
        selector = self.loop_selector
        assert selector is not None
        selector.unregister(pidfd)
        os.close(pidfd)
        try:
            os.waitpid(pid, 0)  # returns at once: the child is a zombie already
        except ChildProcessError:
            pass
        self.active_children.discard(pid)
        if self._accept_paused and len(self.active_children) < self.max_children:
            selector.register(self, selectors.EVENT_READ)
            self._accept_paused = False

    def _loop_stopped(self, selector: selectors.BaseSelector) -> None:
        # The selector is closing: its pidfds go with it; polling takes over reaping.
        for pidfd in (self._pidfds or {}).values():
            os.close(pidfd)
        self._pidfds = None
        self._accept_paused = False
        super()._loop_stopped(selector)

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
