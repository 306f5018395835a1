"""Layer 06 — a bounded thread pool: ThreadPoolMixIn and ThreadPoolTCPServer.

Design note
-----------
``ThreadingMixIn`` starts a thread for every connection: unbounded, and each start
costs tens of microseconds -- for short connection-per-request traffic, more than the
request itself.  ``ThreadPoolMixIn`` keeps ``max_workers`` threads alive instead.  The
serving thread accepts, as in every server; ``process_request`` puts the connection on
a queue, and the first idle worker takes it and runs the rest of the pipeline
(``finish_request``, ``shutdown_request``).

The queue is bounded: the pool holds ``max_workers + queue_size`` connections at a
time (a semaphore counts them in and the workers count them out), one per worker and
``queue_size`` waiting.  The next connection is *refused* -- shut down at once (the client
reads EOF), counted in ``refused`` and logged (a line a second at most; the lines count
the rest).  It is never left waiting without limit.

The trade-off, shown in notebook 06: a worker is held for the whole life of a
connection.  With persistent connections, ``max_workers`` clients occupy every worker
and the rest wait in the queue.  ``request_time_limit`` bounds how long one request may
hold a worker: the serving thread shuts down connections served longer than that
(checked in ``service_actions``), so clients that trickle a byte at a time cannot hold
the pool for ever.  Use the pool for short requests; use ``ThreadingMixIn`` or the
event-driven ``SelectorMixIn`` for long-lived connections.

A worker survives its handlers: ``SystemExit`` raised by a handler ends that request,
is logged, and the worker takes the next one.  Workers wait for work for ever, so they
are daemon threads: they never keep the interpreter alive; ``server_close`` stops them
(and, with ``block_on_close``, waits for the requests in progress, as
``ThreadingMixIn`` does).
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from .mixins import Requests, ThreadingMixIn
from .pipeline import TCPServer, UnixStreamServer
from .trace import RepeatedWarning, emit, logger

Job = tuple[Any, Any] | None  # (request, client_address), or None: stop


class ThreadPoolMixIn(ThreadingMixIn):
    """Serve requests on a fixed pool of worker threads.

    ``max_workers``: worker threads, started with the first request.  ``queue_size``:
    accepted connections that may wait for a worker; past that, refused.
    ``request_time_limit``: seconds one request may hold a worker before its connection
    is shut down (``None``: no limit).  ``block_on_close`` and ``close_grace`` apply to
    the requests in progress as for ``ThreadingMixIn``; connections still queued at
    ``server_close`` are closed unanswered.
    """

    max_workers: int = 16
    queue_size: int = 64
    request_time_limit: float | None = 60.0
    refused: int = 0
    __jobs: queue.SimpleQueue[Job] | None = None
    __workers: tuple[threading.Thread, ...] = ()
    __closing = False

    def process_request(self, request: Any, client_address: Any) -> None:
        jobs = self.__jobs or self.__start()
        if self.__room.acquire(blocking=False):  # a worker, or a place in the queue
            jobs.put((request, client_address))
            return
        self.refused += 1
        emit(self, "refused", client_address, "pool and queue full")
        self.__refusals(self.max_workers, self.queue_size, client_address)
        self.shutdown_request(request)

    def __start(self) -> queue.SimpleQueue[Job]:
        self.__jobs = jobs = queue.SimpleQueue[Job]()
        self._threads = self._threads or Requests()
        self.__room = threading.Semaphore(self.max_workers + self.queue_size)
        self.__refusals = RepeatedWarning("refused connections", "pool full (%d+%d): refused %s")
        self.__workers = tuple(
            threading.Thread(target=self.__work, args=(jobs,), name=f"pool-worker-{i}", daemon=True)
            for i in range(self.max_workers)
        )
        for worker in self.__workers:
            worker.start()
        return jobs

    def __work(self, jobs: queue.SimpleQueue[Job]) -> None:
        while (job := jobs.get()) is not None:
            request, client_address = job
            if self.__closing:  # server_close: what is still queued goes unanswered
                logger.info("server_close: closed a queued connection from %s", client_address)
                self.shutdown_request(request)
                continue
            assert self._threads is not None
            self._threads.add(request, threading.current_thread())
            try:
                self.process_request_thread(request, client_address)
            except BaseException as exc:  # SystemExit from a handler must not cost a worker
                logger.error("pool worker: a handler raised %r; the worker goes on", exc)
            self.__room.release()

    def service_actions(self) -> None:
        super().service_actions()
        limit, serving = self.request_time_limit, self._threads
        if limit is not None and serving and (cut := serving.cut(older_than=limit)):
            logger.warning("thread pool: shut down %d request(s) served for over %g s", cut, limit)

    def server_close(self) -> None:
        self.shutdown()  # a loop still running stops first: nothing more is queued
        if self.__jobs is not None:
            self.__closing = True
            self.__refusals.flush()
            for _ in self.__workers:
                self.__jobs.put(None)  # each worker stops when it gets one
        super().server_close()  # the requests in progress get close_grace (at most twice)
        if self.block_on_close:  # the other workers are on their way out: wait for them
            stuck = {entry[1] for entry in list((self._threads or {}).values())}
            for worker in set(self.__workers) - stuck:
                worker.join()


class ThreadPoolTCPServer(ThreadPoolMixIn, TCPServer): ...


class ThreadPoolUnixStreamServer(ThreadPoolMixIn, UnixStreamServer): ...
