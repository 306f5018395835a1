"""Layer 05 — concurrency mix-ins, and the composed servers.

Design note
-----------
A synchronous server serves one request at a time on the loop's thread: a slow client
holds up everyone behind it.  The cure is to hand the request to someone else in
``process_request`` and return to the loop at once.  A mix-in placed *before* the
server class in the bases overrides that hook (Python's MRO finds it first):

    class ThreadingTCPServer(ThreadingMixIn, TCPServer): pass

    ThreadingTCPServer -> ThreadingMixIn -> TCPServer -> BaseServer -> ServeLoop

Everything else -- ``__init__``, ``get_request``, ``shutdown_request`` -- still comes from
``TCPServer``; the mix-in also overrides ``server_close``, to wait for its threads.

``ThreadingMixIn`` starts a thread per request.  ``daemon_threads`` (default false)
decides whether the interpreter may exit while those threads still run.  With
``block_on_close`` (default true) ``server_close`` waits for the threads -- for at most
``close_grace`` seconds, then it shuts their connections down and waits once more as
long, and logs any handler still running after that.  socketserver waits forever: one
idle client of a threading server makes its ``server_close`` hang.

``ForkingMixIn`` forks a child per request; the parent closes its copy of the
connection and reaps its children.  It only ever waits for *its own* children, by pid
-- socketserver calls ``waitpid(-1)`` at ``max_children``, which reaps (and steals the
exit status of) any child of the process, and blocks the loop, ``shutdown()``
included, until one exits.  minisocket reaps in ``service_actions`` as socketserver
does, and at ``max_children`` stops *accepting* (new clients wait in the backlog),
checking every few milliseconds for a child that has exited, while the loop goes on
serving everything else.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from .pipeline import MixInBase, TCPServer, UDPServer, UnixDatagramServer, UnixStreamServer
from .trace import emit, logger


class Requests(dict[int, list[Any]]):
    """The requests being served on other threads: ``id(request)`` to ``[request,
    thread, start time]``.  Whoever hands a request to a thread adds it; the thread
    removes it when done; ``server_close`` and the pool's time limit read them.

    Owned by the process that made it: after a fork, the child's copy does nothing to
    the connections, which are the parent's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pid = os.getpid()

    def add(self, request: Any, thread: threading.Thread) -> None:
        self[id(request)] = [request, thread, time.monotonic()]

    def discard(self, request: Any) -> None:
        self.pop(id(request), None)

    def cut(self, older_than: float = 0.0) -> int:
        """Shut down the connections of requests served for *older_than* seconds or
        more, so their handlers see end of file or an error and return; each request
        at most once.  Datagram requests share the server's socket: never cut."""
        now, cut = time.monotonic(), 0
        for entry in list(self.values()):
            request, _thread, since = entry
            if now - since >= older_than and isinstance(request, socket.socket):
                entry[2] = float("inf")  # never again
                try:
                    request.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv
                    cut += 1
                except OSError:
                    pass  # closed meanwhile
        return cut

    def join(self, timeout: float | None) -> list[threading.Thread]:
        """Join the serving threads, within *timeout* seconds; return those still alive."""
        deadline = None if timeout is None else time.monotonic() + timeout
        threads = {thread for _request, thread, _since in list(self.values())}
        threads.discard(threading.current_thread())  # server_close() from a handler
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return [thread for thread in threads if thread.is_alive()]


class ThreadingMixIn(MixInBase):
    """Serve each request in a new thread.

    ``daemon_threads``: request threads do not keep the interpreter alive.
    ``block_on_close``: ``server_close`` waits for the request threads (ignored for
    daemon threads).  ``close_grace``: how long requests still being served at
    ``server_close`` may go on, in seconds, before their connections are shut down
    (their handlers then see end of file or an error, and return); ``server_close``
    then waits as long again for the threads, and logs those still running.  Without
    ``block_on_close``, it returns at once and the connections are shut down in the
    background after ``close_grace``.  ``None``: socketserver's way, no bound.
    ``_threads`` (socketserver's name): the requests being served, and on which thread.
    """

    daemon_threads: bool = False
    block_on_close: bool = True
    close_grace: float | None = 5.0
    _threads: Requests | None = None

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """The request thread's body: the pipeline's finish/error/shutdown steps."""
        try:
            self.finish_request(request, client_address)
        except Exception:
            emit(self, "handle_error", client_address)
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._threads.discard(request)  # type: ignore[union-attr]  # (made before the thread)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address)
        )
        thread.daemon = self.daemon_threads
        if self._threads is None:
            self._threads = Requests()
        self._threads.add(request, thread)
        thread.start()

    def server_close(self) -> None:
        super().server_close()
        requests, grace = self._threads, self.close_grace
        if requests is None or requests.pid != os.getpid():
            return
        if self.daemon_threads or not self.block_on_close:
            if grace is not None and requests:  # do not block, nor serve them for ever
                timer = threading.Timer(grace, requests.cut)
                timer.daemon = True  # and never keep the interpreter alive for it
                timer.start()
        elif requests.join(grace) and grace is not None:
            logger.info("server_close: cut %d connection(s) after %g s", requests.cut(), grace)
            if stuck := requests.join(grace):
                logger.warning("server_close: not waiting for handler thread(s) %s", stuck)


class ForkingMixIn(MixInBase):
    """Serve each request in a child process (POSIX only).

    ``max_children``: at this many live children, accept no more until one exits.
    ``timeout``: ``handle_request`` wakes at least this often to reap.
    ``block_on_close``: ``server_close`` waits for every child.  ``active_children`` is
    the set of live child pids (``None`` before the first fork).
    """

    timeout: float | None = 300
    active_children: set[int] | None = None
    max_children: int = 40
    block_on_close: bool = True

    def collect_children(self, *, blocking: bool = False) -> None:
        """Reap our children that have exited (with *blocking*: wait for all of them).

        Only our own pids are waited for, never ``waitpid(-1)``.
        """
        for pid in list(self.active_children or ()):
            try:
                done, _status = os.waitpid(pid, 0 if blocking else os.WNOHANG)
            except ChildProcessError:
                done = pid  # reaped by someone else: it is gone all the same
            if done:
                self.active_children.discard(pid)  # type: ignore[union-attr]

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
            if len(self.active_children) >= self.max_children:  # (only when accepting)
                self.pause_accepting()  # new clients wait in the backlog
                self.call_later(0.005, self.__wait_for_room)
            return
        # In the child: serve, then leave without running the parent's cleanup code
        # (atexit handlers, finally blocks up the stack, buffered stdio of the parent).
        status = 1
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

    def __wait_for_room(self) -> None:
        """At max_children, every 5 ms: reap, and accept again once a child is gone."""
        self.collect_children()
        if len(self.active_children or ()) < self.max_children:
            self.resume_accepting()
        else:
            self.call_later(0.005, self.__wait_for_room)

    def server_close(self) -> None:
        super().server_close()
        self.collect_children(blocking=self.block_on_close)


class ThreadingTCPServer(ThreadingMixIn, TCPServer): ...


class ThreadingUDPServer(ThreadingMixIn, UDPServer): ...


class ThreadingUnixStreamServer(ThreadingMixIn, UnixStreamServer): ...


class ThreadingUnixDatagramServer(ThreadingMixIn, UnixDatagramServer): ...


class ForkingTCPServer(ForkingMixIn, TCPServer): ...


class ForkingUDPServer(ForkingMixIn, UDPServer): ...


class ForkingUnixStreamServer(ForkingMixIn, UnixStreamServer): ...


class ForkingUnixDatagramServer(ForkingMixIn, UnixDatagramServer): ...
