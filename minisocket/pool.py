"""Layer 05 — a bounded thread pool: ThreadPoolMixIn and ThreadPoolTCPServer.

Design note
-----------
``ThreadingMixIn`` starts a thread for every connection: unbounded, and each start
costs tens of microseconds -- for short connection-per-request traffic, more than the
request itself.  ``ThreadPoolMixIn`` keeps ``max_workers`` threads alive.

Who accepts.  If the serving thread accepted and handed each connection to a worker,
every request would wake two threads in turn: the loop, then the worker.  Instead,
while ``serve_forever`` runs, the idle workers take turns at the listening socket
(*leader/followers*): one of them, the leader, waits in ``select``; when a client
arrives it accepts, runs the pipeline (``verify_request``, ``process_request``),
hands the watch to the next idle worker and serves the connection itself.  A
connection reaches the thread that serves it in one wake-up; waking the next leader
happens while the request is served, off its path.  The listening socket is
non-blocking while this lasts (its timeout is restored when ``serve_forever``
returns), so a worker that loses the race for a connection gets ``BlockingIOError``,
not a hang.

When every worker is busy, nobody is left to watch the socket, so the serving thread
takes over: it accepts into a queue of at most ``queue_size`` waiting connections,
which the workers empty first as they come free.  Past that, a new connection is
*refused*: shut down at once (the client reads EOF), logged (at most once a second,
with a count) and counted in ``refused``.  It is never left waiting without limit.
``handle_request`` and datagram servers use the same queue: the calling thread
accepts, the workers serve.

The trade-off, shown in notebook 05: a worker is held for the whole life of a
connection.  With persistent connections, ``max_workers`` connections occupy every
worker and the rest wait in the queue -- with 16 workers and 64 idle keep-alive
clients, 48 clients get nothing until someone leaves.  Use the pool for short
requests; use ``ThreadingMixIn`` or the event-driven ``SelectorMixIn`` for long-lived
connections.
"""

from __future__ import annotations

import errno
import logging
import select
import selectors
import socket
import sys
import threading
import time
from collections import deque
from socket import socket as Socket
from typing import TYPE_CHECKING, Any

from .loop import Waker
from .mixins import ThreadingMixIn
from .pipeline import TCPServer, UnixStreamServer
from .trace import emit

__all__ = ["ThreadPoolMixIn", "ThreadPoolTCPServer", "ThreadPoolUnixStreamServer"]

logger = logging.getLogger("minisocket")

# Linux gives an accepted socket its own blocking flag; BSD, macOS and Windows copy
# the listening socket's, which is non-blocking while the workers accept.
_ACCEPT_INHERITS_NONBLOCKING = not sys.platform.startswith("linux")


class _Pool:
    """The workers' shared state.

    ``lock`` guards the counters and the queue's length.  The flags are plain
    attributes, set by the serving thread or by ``server_close`` and read without a
    lock: whoever must notice a change is woken through a waker after it is made.
    """

    def __init__(self) -> None:
        self.leading = threading.Lock()  # held by the leader; idle workers queue on it
        self.lock = threading.Lock()
        # Held around a leader's accept() and around switching the listening socket
        # between non-blocking and its own timeout, so that an accept that lost the
        # race for a connection can never block on a socket made blocking meanwhile.
        self.accept_lock = threading.Lock()
        self.jobs: deque[tuple[Any, Any]] = deque()  # accepted, waiting for a worker
        self.idle = 0  # workers not serving a connection (the leader included)
        self.alive = 0  # workers not yet exited
        self.leader: int | None = None  # thread id of the worker holding ``leading``
        self.accepted: tuple[Any, Any] | None = None  # what the leader just accepted
        self.accepting = False  # serve_forever runs: the workers accept
        self.closing = False
        self.loop_accepts = False  # the serving thread watches the socket (overflow)
        self.listen_timeout: float | None = None  # the listening socket's, to restore
        self.leader_waker = Waker()  # wakes the leader: a job was queued, or stop
        self.loop_waker = Waker()  # tells the serving thread that ``idle`` hit or left 0
        self.workers: tuple[threading.Thread, ...] = ()


class ThreadPoolMixIn(ThreadingMixIn):
    """Serve requests on a fixed pool of worker threads.

    ``max_workers``: worker threads, started with ``serve_forever`` (or the first
    request).  ``queue_size``: accepted connections that may wait for a worker; past
    that, refused.  ``daemon_threads``, ``block_on_close`` and ``close_grace`` apply to
    the workers as they do to ``ThreadingMixIn``'s threads.  On close, connections
    still queued are closed, the ones being served get ``close_grace`` to finish, then
    the workers exit (and are joined, with ``block_on_close``).
    """

    max_workers: int = 16
    queue_size: int = 64
    refused: int = 0

    if TYPE_CHECKING:  # from the socket layer (01) the pool is combined with
        socket: Socket
        socket_type: int
        idle_timeout: float | None

    _pool: _Pool | None = None
    _last_refusal_log: float = float("-inf")
    _refused_since_log: int = 0

    # -- the pipeline's hand-off ----------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        pool = self._pool or self._start_workers()
        if pool.leader == threading.get_ident():
            pool.accepted = (request, client_address)  # the leader serves it itself
            return
        with pool.lock:
            # Idle workers will take queued connections at once; only the rest wait.
            full = len(pool.jobs) - pool.idle >= self.queue_size
            if not full:
                pool.jobs.append((request, client_address))
        if full:
            self._refuse(request, client_address)
        else:
            pool.leader_waker.wake()  # the leader (or the next one) takes it

    def get_request(self) -> tuple[Any, Any]:
        pool = self._pool
        if pool is not None and pool.leader == threading.get_ident():
            with pool.accept_lock:
                if not pool.accepting:
                    raise BlockingIOError(errno.EAGAIN, "the pool stopped accepting")
                request, client_address = super().get_request()
        else:
            request, client_address = super().get_request()
        if _ACCEPT_INHERITS_NONBLOCKING and self.socket_type == socket.SOCK_STREAM:
            request.settimeout(self.idle_timeout)
        return request, client_address

    # -- the workers ----------------------------------------------------------------

    def _start_workers(self) -> _Pool:
        pool = self._pool = _Pool()
        pool.idle = pool.alive = self.max_workers
        pool.workers = tuple(
            threading.Thread(
                target=self._work,
                args=(pool,),
                name=f"pool-worker-{i}",
                daemon=self.daemon_threads,
            )
            for i in range(self.max_workers)
        )
        for worker in pool.workers:
            worker.start()
        return pool

    def _work(self, pool: _Pool) -> None:
        selector = self.selector_class()
        try:
            selector.register(pool.leader_waker, selectors.EVENT_READ)
            if self.socket_type == socket.SOCK_STREAM:
                selector.register(self.socket, selectors.EVENT_READ)
            while True:
                with pool.leading:  # idle workers take turns here, one leader at a time
                    pool.leader = threading.get_ident()
                    try:
                        job = self._lead(pool, selector)
                    finally:
                        pool.leader = None
                if job is None:
                    return
                with pool.lock:
                    pool.idle -= 1
                    if not pool.idle and pool.accepting and not pool.loop_accepts:
                        pool.loop_waker.wake()  # every worker is busy: the loop accepts
                self.process_request_thread(*job)
                with pool.lock:
                    pool.idle += 1
                    if pool.idle == 1 and pool.loop_accepts:
                        pool.loop_waker.wake()  # a worker is free: the loop can stop
        finally:
            selector.close()
            with pool.lock:
                pool.alive -= 1
                last = not pool.alive
            if last:
                pool.leader_waker.close()
                pool.loop_waker.close()

    def _lead(self, pool: _Pool, selector: selectors.BaseSelector) -> tuple[Any, Any] | None:
        """As the leader: return the next connection to serve, or ``None`` to exit.

        Queued connections come first.  While serve_forever runs, the leader also
        watches the listening socket and accepts; otherwise it waits for the queue.
        """
        waker = pool.leader_waker
        while True:
            if pool.jobs:
                try:
                    return pool.jobs.popleft()
                except IndexError:
                    pass  # server_close emptied the queue meanwhile
            if pool.closing:
                return None
            if not pool.accepting:
                select.select([waker], [], [])
                waker.drain()
                continue
            for key, _ in selector.select():
                if key.fileobj is waker:
                    waker.drain()
                else:
                    try:
                        self._handle_request_noblock()  # ends in process_request
                    except Exception:
                        # On the serving thread this would end serve_forever; here it
                        # would silently cost a worker.  Log it and keep leading.
                        logger.exception("pool worker: accepting a connection failed")
                    if pool.accepted is not None:
                        job, pool.accepted = pool.accepted, None
                        return job

    def _loop_started(self, selector: selectors.BaseSelector) -> None:
        super()._loop_started(selector)
        pool = self._pool or self._start_workers()
        if self.socket_type != socket.SOCK_STREAM:
            return  # a datagram is not a connection: the loop reads, the queue feeds
        selector.unregister(self)  # the workers watch the socket now
        selector.register(pool.loop_waker, selectors.EVENT_READ, self._overflow_changed)
        with pool.accept_lock:
            pool.listen_timeout = self.socket.gettimeout()
            self.socket.setblocking(False)
            pool.accepting = True
        pool.leader_waker.wake()  # the leader starts watching the socket
        pool.loop_waker.wake()  # in case every worker is busy already

    def _overflow_changed(self, events: int) -> None:
        """On the serving thread: accept while no worker is free, and only then."""
        pool = self._pool
        selector = self.loop_selector
        if pool is None or selector is None:
            return
        pool.loop_waker.drain()
        with pool.lock:
            wanted = pool.accepting and not pool.idle
            if wanted != pool.loop_accepts:
                if wanted:
                    selector.register(self, selectors.EVENT_READ)
                else:
                    selector.unregister(self)
                pool.loop_accepts = wanted

    def _loop_stopped(self, selector: selectors.BaseSelector) -> None:
        pool = self._pool
        if pool is not None and self.socket_type == socket.SOCK_STREAM:
            with pool.accept_lock:
                pool.accepting = pool.loop_accepts = False
                self.socket.settimeout(pool.listen_timeout)
            pool.leader_waker.wake()
        super()._loop_stopped(selector)

    # -- refusing and closing -------------------------------------------------------

    def _refuse(self, request: Any, client_address: Any) -> None:
        self.refused += 1
        self._refused_since_log += 1
        if self.tracer is not None:
            emit(self.tracer, "refused", client_address, "pool and queue full")
        now = time.monotonic()
        if now - self._last_refusal_log >= 1.0:
            logger.warning(
                "thread pool full (%d workers, %d queued): refused %d connection(s), "
                "latest from %s",
                self.max_workers,
                self.queue_size,
                self._refused_since_log,
                client_address,
            )
            self._last_refusal_log, self._refused_since_log = now, 0
        self.shutdown_request(request)

    def server_close(self) -> None:
        pool, self._pool = self._pool, None
        dropped: list[tuple[Any, Any]] = []
        if pool is not None:
            with pool.lock:
                pool.closing = True
                pool.accepting = False
                # Connections still waiting for a worker will not get one: end them
                # now, so that idle clients in the queue cannot keep workers busy.
                dropped = list(pool.jobs)
                pool.jobs.clear()
            pool.leader_waker.wake()  # each leader in turn sees ``closing`` and exits
            for request, _ in dropped:
                self.shutdown_request(request)
            if dropped:
                logger.info("server_close: closed %d connection(s) still queued", len(dropped))
        # Closes the socket, then lets the requests being served finish (close_grace).
        super().server_close()
        if pool is not None and self.block_on_close and not self.daemon_threads:
            for worker in pool.workers:
                worker.join()


class ThreadPoolTCPServer(ThreadPoolMixIn, TCPServer):
    pass


class ThreadPoolUnixStreamServer(ThreadPoolMixIn, UnixStreamServer):
    pass
