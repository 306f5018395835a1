"""The load generator: closed-loop clients on raw ``epoll``, in a process of their own.

Each connection sends one message, waits for the whole echo, records the round-trip
time and sends the next (*closed loop*: a slow server gets fewer requests, as it would
from real users waiting for answers).  Modes:

``echo``     persistent connections, opened before the clock starts
``connect``  a new connection per request; the latency includes the TCP handshake
``slow``     like ``echo``, but a fraction of messages start with ``!``: the server
             burns CPU on them (see :mod:`minisocket.bench.servers`)

The parent process (:mod:`minisocket.bench.runner`) starts several of these, waits
until each prints ``CONNECTED``, then writes ``GO`` to all at once.  Each writes its
latencies (int64 nanoseconds, little-endian; negated for slow requests) to the file
named by ``--out`` and prints one JSON line of counters.  Every wait is bounded: a
connection that gets no reply within ``--grace`` seconds after the run is counted, not
waited for.

The client is deliberately not minisocket: it must cost as little CPU as possible, so
it uses ``select.epoll`` directly and keeps per-connection state in lists.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import select
import socket
import sys
import time
from array import array

__all__ = ["main"]


def _message(size: int, slow: bool) -> bytes:
    return (b"!" if slow else b"x") + b"x" * (size - 1)


def _connect(address: tuple[str, int], timeout: float) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


class _Window:
    """The clock of one run: start, measured window, and when to stop waiting."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.start = time.perf_counter_ns()
        self.measure_from = self.start + int(args.warmup * 1e9)
        self.stop_at = self.measure_from + int(args.duration * 1e9)
        self.give_up_at = self.stop_at + int(args.grace * 1e9)
        self._cpu0 = time.process_time()

    def report(self, out: str, latencies: array[int], **counters: object) -> dict[str, object]:
        """Write the latencies to *out*; return the counters with CPU and wall time."""
        cpu = time.process_time() - self._cpu0
        wall = (time.perf_counter_ns() - self.start) / 1e9
        with open(out, "wb") as f:
            latencies.tofile(f)
        return {"requests": len(latencies), **counters, "cpu": cpu, "wall": wall}


def run_persistent(args: argparse.Namespace) -> dict[str, object]:
    address = (args.host, args.port)
    rng = random.Random(args.seed)
    socks: list[socket.socket] = []
    failed_connects = 0
    for _ in range(args.connections):
        try:
            socks.append(_connect(address, args.connect_timeout))
        except OSError:
            failed_connects += 1
    print(f"CONNECTED {len(socks)} {failed_connects}", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return {"aborted": True}

    normal, slow = _message(args.size, False), _message(args.size, True)
    poller = select.epoll()
    index = {s.fileno(): i for i, s in enumerate(socks)}
    sent_at = [0] * len(socks)
    received = [0] * len(socks)
    completed = [0] * len(socks)
    latencies = array("q")
    buf = bytearray(65536)
    errors = 0
    now = time.perf_counter_ns
    clock = _Window(args)
    measure_from, stop_at, give_up_at = clock.measure_from, clock.stop_at, clock.give_up_at

    is_slow = [False] * len(socks)

    def send(i: int) -> None:
        is_slow[i] = bool(args.slow_fraction) and rng.random() < args.slow_fraction
        sent_at[i] = now()
        socks[i].send(slow if is_slow[i] else normal)  # <= 64 KiB: the socket buffer takes it

    for i, sock in enumerate(socks):
        poller.register(sock.fileno(), select.EPOLLIN)
        send(i)
    outstanding = len(socks)
    while outstanding:
        t = now()
        if t >= give_up_at:
            break
        for fd, _ in poller.poll(min(0.1, (give_up_at - t) / 1e9)):
            i = index[fd]
            try:
                n = socks[i].recv_into(buf)
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if n == 0:  # the server closed or reset the connection
                errors += 1
                poller.unregister(fd)
                outstanding -= 1
                continue
            received[i] += n
            if received[i] < args.size:
                continue
            received[i] = 0
            done = now()
            if done >= measure_from and sent_at[i] < stop_at:
                # Slow requests are recorded negated, so one file keeps both kinds.
                latencies.append(sent_at[i] - done if is_slow[i] else done - sent_at[i])
                # "Served" means answered while the run lasted; a reply that comes in
                # the grace period still counts in the latencies, with its long wait.
                completed[i] += done < stop_at
            if done < stop_at:
                send(i)
            else:
                poller.unregister(fd)
                outstanding -= 1
    for sock in socks:
        sock.close()
    poller.close()
    return clock.report(
        args.out,
        latencies,
        errors=errors + failed_connects,
        timeouts=outstanding,
        connections=len(socks),
        # connections that got no reply at all while the run lasted
        unserved=sum(1 for c in completed if c == 0) + failed_connects,
    )


def run_connect(args: argparse.Namespace) -> dict[str, object]:
    """One new connection per request, ``--connections`` of them in flight at once."""
    address = (args.host, args.port)
    print("CONNECTED 0 0", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return {"aborted": True}
    message = _message(args.size, False)
    poller = select.epoll()
    conns: dict[int, list[object]] = {}  # fd -> [socket, started_ns, received, state]
    latencies = array("q")
    buf = bytearray(65536)
    errors = 0
    now = time.perf_counter_ns
    clock = _Window(args)
    measure_from, stop_at, give_up_at = clock.measure_from, clock.stop_at, clock.give_up_at

    def open_one() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, "connect failed")
        conns[sock.fileno()] = [sock, now(), 0, "connecting"]
        poller.register(sock.fileno(), select.EPOLLOUT)

    def finish(fd: int, ok: bool) -> None:
        nonlocal errors
        sock, started, _, _ = conns.pop(fd)
        poller.unregister(fd)
        assert isinstance(sock, socket.socket) and isinstance(started, int)
        sock.close()
        done = now()
        if not ok:
            errors += 1
        elif done >= measure_from and started < stop_at:
            latencies.append(done - started)
        if done < stop_at:
            try:
                open_one()
            except OSError:
                errors += 1

    for _ in range(args.connections):
        open_one()
    while conns and now() < give_up_at:
        for fd, _events in poller.poll(0.1):
            state = conns[fd]
            sock = state[0]
            assert isinstance(sock, socket.socket)
            if state[3] == "connecting":
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    finish(fd, ok=False)
                    continue
                sock.send(message)
                state[3] = "reading"
                poller.modify(fd, select.EPOLLIN)
                continue
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if n == 0:
                finish(fd, ok=False)
                continue
            got = state[2]
            assert isinstance(got, int)
            state[2] = got + n
            if got + n >= args.size:
                finish(fd, ok=True)
    timeouts = len(conns)
    for state in conns.values():
        sock = state[0]
        assert isinstance(sock, socket.socket)
        sock.close()
    poller.close()
    return clock.report(
        args.out,
        latencies,
        errors=errors,
        timeouts=timeouts,
        connections=args.connections,
        unserved=0,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minisocket.bench.load")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--mode", choices=("echo", "connect", "slow"), default="echo")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.2)
    parser.add_argument("--grace", type=float, default=2.0, help="wait for late replies")
    parser.add_argument("--connect-timeout", type=float, default=5.0)
    parser.add_argument("--slow-fraction", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cpu", type=int, help="run on this CPU only (Linux)")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the load generator only targets loopback addresses")
    result = run_connect(args) if args.mode == "connect" else run_persistent(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
