"""Layer 05 — a bounded thread pool: ThreadPoolMixIn and ThreadPoolTCPServer.

Design note
-----------
``ThreadingMixIn`` starts a thread for every connection: unbounded, and each start
costs tens of microseconds -- for short connection-per-request traffic, more than the
request itself.  ``ThreadPoolMixIn`` keeps ``max_workers`` threads alive and feeds them
accepted connections through a queue of at most ``queue_size`` waiting connections.

When every worker is busy and the queue is full, a new connection is *refused*: shut
down at once (the client reads EOF), logged (at most once a second, with a count) and
counted in ``refused``.  It is never left waiting without limit.

The trade-off, shown in notebook 05: a worker is held for the whole life of a
connection.  With persistent connections, ``max_workers`` connections occupy every
worker and the rest wait in the queue -- with 16 workers and 64 idle keep-alive
clients, 48 clients get nothing until someone leaves.  Use the pool for short
requests; use ``ThreadingMixIn`` or the event-driven ``SelectorMixIn`` for long-lived
connections.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from .mixins import ThreadingMixIn
from .pipeline import TCPServer, UnixStreamServer
from .trace import emit

__all__ = ["ThreadPoolMixIn", "ThreadPoolTCPServer", "ThreadPoolUnixStreamServer"]

logger = logging.getLogger("minisocket")

_STOP = None  # the sentinel that tells a worker to exit


class ThreadPoolMixIn(ThreadingMixIn):
    """Serve requests on a fixed pool of worker threads.

    ``max_workers``: worker threads, started on the first request.  ``queue_size``:
    accepted connections that may wait for a worker; past that, refused.
    ``daemon_threads``, ``block_on_close`` and ``close_grace`` apply to the workers as
    they do to ``ThreadingMixIn``'s threads.  On close, connections still queued are
    closed, the ones being served get ``close_grace`` to finish, then the workers exit
    (and are joined, with ``block_on_close``).
    """

    max_workers: int = 16
    queue_size: int = 64
    refused: int = 0

    # A SimpleQueue (C, unbounded) plus a counter is faster than a bounded Queue, and
    # lets server_close() enqueue the stop sentinels even when the queue is "full".
    _jobs: queue.SimpleQueue[tuple[Any, Any] | None] | None = None
    _workers: tuple[threading.Thread, ...] = ()
    _waiting = 0
    _last_refusal_log: float = float("-inf")
    _refused_since_log: int = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        jobs = self._jobs
        if jobs is None:
            jobs = self._start_workers()
        with self._waiting_lock:
            full = self._waiting >= self.queue_size
            if not full:
                self._waiting += 1
        if full:
            self._refuse(request, client_address)
        else:
            jobs.put((request, client_address))

    def _start_workers(self) -> queue.SimpleQueue[tuple[Any, Any] | None]:
        jobs: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._jobs = jobs
        self._waiting_lock = threading.Lock()
        self._workers = tuple(
            threading.Thread(
                target=self._work,
                args=(jobs,),
                name=f"pool-worker-{i}",
                daemon=self.daemon_threads,
            )
            for i in range(self.max_workers)
        )
        for worker in self._workers:
            worker.start()
        return jobs

    def _work(self, jobs: queue.SimpleQueue[tuple[Any, Any] | None]) -> None:
        while (job := jobs.get()) is not _STOP:
            with self._waiting_lock:
                self._waiting -= 1
            self.process_request_thread(*job)

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
        jobs, workers = self._jobs, self._workers
        self._jobs, self._workers = None, ()
        if jobs is not None:
            # Connections still waiting for a worker will not get one: end them now, so
            # that a queue of idle clients cannot keep the workers busy after closing.
            dropped = 0
            while True:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not _STOP:
                    self.shutdown_request(job[0])
                    dropped += 1
            if dropped:
                logger.info("server_close: closed %d connection(s) still queued", dropped)
        # Closes the socket, then lets the requests being served finish (close_grace).
        super().server_close()
        if jobs is None:
            return
        for _ in workers:
            jobs.put(_STOP)
        if self.block_on_close and not self.daemon_threads:
            for worker in workers:
                worker.join()


class ThreadPoolTCPServer(ThreadPoolMixIn, TCPServer):
    pass


class ThreadPoolUnixStreamServer(ThreadPoolMixIn, UnixStreamServer):
    pass
