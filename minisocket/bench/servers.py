"""Every server kind of :mod:`minisocket.bench.kinds`, speaking one echo protocol.

The protocol: whatever a connection sends comes back unchanged.  A message whose first
byte is ``!`` is a *slow request*: before echoing it the handler does a fixed amount of
work, :func:`work` (``--work-units`` turns of a pure-Python loop, holding the
interpreter lock the way real Python work does -- rendering a page, say).  The same
number of turns under every server, so a slow request costs the same CPU whoever serves
it: a server that is preempted, or waits for the lock, takes longer, but does not do
less.  The runner converts milliseconds to turns once per run (:func:`calibrate`), on
an idle core, and gives every server the same count.

Run one server per process (so it never shares an interpreter lock with the load
generator)::

    python -m minisocket.bench.servers select --work-units 400000 [--cpu 0]

It prints ``READY <port>`` once it listens on 127.0.0.1 and serves until its standard
input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from typing import Any, Protocol

import minisocket

from .kinds import KINDS, Kind

__all__ = ["calibrate", "main", "start", "work"]

SLOW_MARK = ord("!")
HOST = "127.0.0.1"


def work(units: int) -> int:
    """A fixed amount of CPU work: *units* turns of a small integer loop (GIL held)."""
    x = 0
    for i in range(units):
        x = (x * 31 + i) & 0xFFFF
    return x


def calibrate(ms: float, trials: int = 40) -> int:
    """How many :func:`work` units take *ms* milliseconds of CPU on an idle core.

    The fastest of *trials* short timings by ``time.thread_time`` (CPU, not wall time,
    so a trial that is preempted does not count as slow; the fastest, because a busy
    machine only ever makes the loop slower).  A busy machine slows even CPU time (the
    other thread of a core, another guest), so the trials span some 100 ms: nine trials
    over 16 ms proved too few -- once they all ran slow, and a one-thread server was
    credited with 1.2 cores of work.
    """
    if ms <= 0:
        return 0
    probe = 20_000
    per_unit = []
    for _ in range(trials):
        started = time.thread_time()
        work(probe)
        per_unit.append((time.thread_time() - started) / probe)
    return max(1, round(ms / 1000 / min(per_unit)))


class Servable(Protocol):
    """What the benchmark needs of a server: socketserver's shape."""

    server_address: Any

    def serve_forever(self) -> None: ...

    def shutdown(self) -> None: ...

    def server_close(self) -> None: ...


def _blocking_handler(base: type[Any], units: int) -> type[Any]:
    class Echo(base):  # type: ignore[misc]
        def handle(self) -> None:
            sock = self.request
            try:
                while data := sock.recv(65536):
                    if units and data[0] == SLOW_MARK:
                        work(units)
                    sock.sendall(data)
            except ConnectionError:
                pass  # a client that gave up (starved clients close at the end of a run)

    return Echo


def _protocol_handler(units: int) -> type[minisocket.ProtocolRequestHandler]:
    class Echo(minisocket.ProtocolRequestHandler):
        def data_received(self, data: bytes) -> None:
            if units and data[0] == SLOW_MARK:
                work(units)
            self.send(data)

    return Echo


class _AsyncioServer:
    """An asyncio echo server with the serve_forever/shutdown/server_close shape."""

    def __init__(self, units: int, streams: bool) -> None:
        self.units = units
        self.streams = streams
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(self._start())
        self.server_address = self.server.sockets[0].getsockname()

    async def _start(self) -> asyncio.base_events.Server:
        units = self.units
        if self.streams:

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                try:
                    while data := await reader.read(65536):
                        if units and data[0] == SLOW_MARK:
                            work(units)
                        writer.write(data)
                        await writer.drain()
                except ConnectionError:
                    pass
                finally:
                    writer.close()

            return await asyncio.start_server(handle, HOST, 0)

        class Echo(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                if units and data[0] == SLOW_MARK:
                    work(units)
                self.transport.write(data)

        return await self.loop.create_server(Echo, HOST, 0)

    def serve_forever(self) -> None:
        self.loop.run_forever()

    def shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)

    def server_close(self) -> None:
        self.server.close()
        self.loop.close()


def start(kind: Kind, units: int = 0) -> Servable:
    """An echo server of *kind* on 127.0.0.1, port 0, doing *units* of work per slow
    request; not yet serving."""
    if kind.library == "asyncio":
        return _AsyncioServer(units, streams=kind.name == "asyncio-streams")
    if kind.evented:
        handler: type[Any] = _protocol_handler(units)
    else:
        import socketserver

        library = socketserver if kind.library == "stdlib" else minisocket
        handler = _blocking_handler(library.BaseRequestHandler, units)
    server: Servable = kind.server_class()((HOST, 0), handler)
    return server


def run(name: str, units: int) -> None:
    """Serve *name* until standard input closes; announce the port on standard output."""
    server = start(KINDS[name], units)

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()
        server.shutdown()

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minisocket.bench.servers")
    parser.add_argument("name", choices=sorted(KINDS))
    parser.add_argument("--work-units", type=int, default=0, help="work per slow request")
    parser.add_argument("--cpu", type=int, help="run on this CPU only (Linux)")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})  # before any thread starts: all inherit it
    run(args.name, args.work_units)


if __name__ == "__main__":
    main()
