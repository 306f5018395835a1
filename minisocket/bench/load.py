"""The load generator: closed-loop clients on raw ``epoll``, in a process of their own.

Each client sends one message, waits for the whole echo, records the round-trip time
and sends the next (*closed loop*: a slow server gets fewer requests, as it would from
real users waiting for answers).  Modes:

``echo``     persistent connections, opened before the clock starts
``connect``  a new connection per request; the latency includes the TCP handshake
``slow``     like ``echo``, but a fraction of messages start with ``!``: the server
             does a fixed amount of work on them (see :mod:`minisocket.bench.servers`)

The parent process (:mod:`minisocket.bench.runner`) starts several of these, waits
until each prints ``CONNECTED``, then writes ``GO <t0>`` to all at once: every client
process starts its clock at the same instant *t0* (``time.monotonic_ns``).  Each writes its
latencies (int64 nanoseconds, little-endian; negated for slow requests) to the file
named by ``--out`` and prints one JSON line of counters.  A request counts when its reply
arrives within the measured window (whenever it was sent); replies that arrive later,
in the grace period, are counted as ``late`` and not measured.

Every client ends the run in one of three states: *served* (at least one reply within
the measured window), *refused* (the server closed or reset its connection, or never
accepted it, without a reply in the window) or *waiting* (still connected, never
answered).  Every wait is bounded: ``--grace`` seconds after the window, a client still
waiting is counted, not waited for.  The process's CPU time is read at both ends of the
measured window, so a result says whether the clients themselves ran out of CPU.

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

LINGER_NS = 250_000_000  # connections stay open this long after the window


def _message(size: int, slow: bool) -> bytes:
    return (b"!" if slow else b"x") + b"x" * (size - 1)


def _connect(address: tuple[str, int], timeout: float) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


class _Window:
    """The clock of one run: the measured window, when to stop waiting, and the CPU
    this process used inside the window."""

    def __init__(self, args: argparse.Namespace, go: str) -> None:
        # "GO <t0>": every client process starts its clock at the same instant, t0 on
        # the system's monotonic clock (the runner's), whenever it read the line
        now = time.perf_counter_ns()
        parts = go.split()
        if len(parts) == 2:
            now += int(parts[1]) - time.monotonic_ns()
        self.measure_from = now + int(args.warmup * 1e9)
        self.stop_at = self.measure_from + int(args.duration * 1e9)
        self.give_up_at = self.stop_at + int(args.grace * 1e9)
        self._marks: list[tuple[int, float]] = []  # (ns, CPU s) at the window's two ends

    def tick(self, now: int) -> float:
        """Note the window's ends as *now* passes them; return how long poll may wait."""
        if len(self._marks) < 2 and now >= (self.measure_from, self.stop_at)[len(self._marks)]:
            self._marks.append((now, time.process_time()))
        edge = (self.measure_from, self.stop_at, self.give_up_at)[min(len(self._marks), 2)]
        return max(0.0, min(0.1, (edge - now) / 1e9))

    def linger(self) -> None:
        """Keep the connections open a moment after the window: the runner reads the
        server's CPU at its end, and a forking server's children exit with them."""
        time.sleep(max(0.0, (self.stop_at + LINGER_NS - time.perf_counter_ns()) / 1e9))

    def report(self, out: str, latencies: array[int], **counters: object) -> dict[str, object]:
        """Write the latencies to *out*; return the counters with the window's CPU."""
        while len(self._marks) < 2:  # the run ended early: close the window now
            self._marks.append((time.perf_counter_ns(), time.process_time()))
        (t0, cpu0), (t1, cpu1) = self._marks
        with open(out, "wb") as f:
            latencies.tofile(f)
        seconds = (t1 - t0) / 1e9
        return {
            "requests": len(latencies),
            **counters,
            # CPU as a share of one core over the measured window
            "cpu": (cpu1 - cpu0) / seconds if seconds > 0 else 0.0,
            "window": seconds,
        }


def _states(completed: list[int], closed: list[bool]) -> dict[str, int]:
    """Clients served, refused and waiting (see the module's docstring)."""
    served = sum(1 for c in completed if c)
    refused = sum(1 for c, x in zip(completed, closed, strict=True) if not c and x)
    return {"served": served, "refused": refused, "waiting": len(completed) - served - refused}


def run_persistent(args: argparse.Namespace) -> dict[str, object]:
    address = (args.host, args.port)
    rng = random.Random(args.seed)
    socks: list[socket.socket | None] = []
    for _ in range(args.connections):
        try:
            socks.append(_connect(address, args.connect_timeout))
        except OSError:
            socks.append(None)  # never accepted: refused
    live = [s for s in socks if s is not None]
    print(f"CONNECTED {len(live)} {len(socks) - len(live)}", flush=True)
    go = sys.stdin.readline()
    if not go.startswith("GO"):
        return {"aborted": True}

    normal, slow = _message(args.size, False), _message(args.size, True)
    poller = select.epoll()
    index = {s.fileno(): i for i, s in enumerate(socks) if s is not None}
    n = len(socks)
    sent_at, received, completed = [0] * n, [0] * n, [0] * n
    closed = [s is None for s in socks]
    is_slow = [False] * n
    latencies = array("q")
    buf = bytearray(65536)
    late = 0
    now = time.perf_counter_ns
    clock = _Window(args, go)
    measure_from, stop_at, give_up_at = clock.measure_from, clock.stop_at, clock.give_up_at

    def send(i: int) -> None:
        is_slow[i] = bool(args.slow_fraction) and rng.random() < args.slow_fraction
        sent_at[i] = now()
        sock = socks[i]
        assert sock is not None
        sock.send(slow if is_slow[i] else normal)  # <= 64 KiB: the socket buffer takes it

    for i in index.values():
        poller.register(socks[i].fileno(), select.EPOLLIN)  # type: ignore[union-attr]
        send(i)
    outstanding = len(index)
    while outstanding:
        t = now()
        if t >= give_up_at:
            break
        for fd, _ in poller.poll(clock.tick(t)):
            i = index[fd]
            sock = socks[i]
            assert sock is not None
            try:
                got = sock.recv_into(buf)
            except BlockingIOError:
                continue
            except OSError:
                got = 0
            if got == 0:  # the server closed or reset the connection
                closed[i] = True
                poller.unregister(fd)
                outstanding -= 1
                continue
            received[i] += got
            if received[i] < args.size:
                continue
            received[i] = 0
            done = now()
            if measure_from <= done < stop_at:
                # Slow requests are recorded negated, so one file keeps both kinds.
                latencies.append(sent_at[i] - done if is_slow[i] else done - sent_at[i])
                completed[i] += 1
            if done < stop_at:
                send(i)
            else:  # answered in the grace period: counted, not measured
                late += 1
                poller.unregister(fd)
                outstanding -= 1
    clock.tick(now())
    clock.linger()
    for s in socks:
        if s is not None:
            s.close()
    poller.close()
    return clock.report(
        args.out,
        latencies,
        connections=n,
        errors=sum(closed),  # connections the server closed, reset or never accepted
        late=late,  # replies that came after the window, in the grace period
        timeouts=outstanding,  # connections still waiting for a reply when we gave up
        **_states(completed, closed),
    )


def run_connect(args: argparse.Namespace) -> dict[str, object]:
    """One new connection per request, ``--connections`` clients each with one in flight.

    A client is served if one of its connections was answered in the window, waiting
    if its last connection was still unanswered at the end, refused otherwise.
    """
    address = (args.host, args.port)
    print("CONNECTED 0 0", flush=True)
    go = sys.stdin.readline()
    if not go.startswith("GO"):
        return {"aborted": True}
    message = _message(args.size, False)
    poller = select.epoll()
    # fd -> [socket, started_ns, bytes received, connected?, client]
    conns: dict[int, list[object]] = {}
    n = args.connections
    completed, closed = [0] * n, [False] * n
    latencies = array("q")
    buf = bytearray(65536)
    errors = late = 0
    now = time.perf_counter_ns
    clock = _Window(args, go)
    measure_from, stop_at, give_up_at = clock.measure_from, clock.stop_at, clock.give_up_at

    def open_one(client: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, "connect failed")
        conns[sock.fileno()] = [sock, now(), 0, False, client]
        poller.register(sock.fileno(), select.EPOLLOUT)

    def finish(fd: int, ok: bool) -> None:
        nonlocal errors, late
        sock, started, _, _, client = conns.pop(fd)
        poller.unregister(fd)
        assert isinstance(sock, socket.socket)
        assert isinstance(started, int) and isinstance(client, int)
        sock.close()
        done = now()
        closed[client] = not ok
        if not ok:
            errors += 1
        elif measure_from <= done < stop_at:
            latencies.append(done - started)
            completed[client] += 1
        elif done >= stop_at:
            late += 1
        if done < stop_at:
            try:
                open_one(client)
            except OSError:
                errors += 1
                closed[client] = True

    for client in range(n):
        open_one(client)
    while conns and (t := now()) < give_up_at:
        for fd, _events in poller.poll(clock.tick(t)):
            state = conns[fd]
            sock = state[0]
            assert isinstance(sock, socket.socket)
            if not state[3]:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    finish(fd, ok=False)
                    continue
                sock.send(message)
                state[3] = True
                poller.modify(fd, select.EPOLLIN)
                continue
            try:
                got = sock.recv_into(buf)
            except BlockingIOError:
                continue
            except OSError:
                got = 0
            if got == 0:
                finish(fd, ok=False)
                continue
            total = state[2]
            assert isinstance(total, int)
            state[2] = total + got
            if total + got >= args.size:
                finish(fd, ok=True)
    clock.tick(now())
    clock.linger()
    timeouts = len(conns)
    for state in conns.values():
        sock, owner = state[0], state[4]
        assert isinstance(sock, socket.socket) and isinstance(owner, int)
        sock.close()
        closed[owner] = False  # its last connection is unanswered: waiting, not refused
    poller.close()
    return clock.report(
        args.out,
        latencies,
        connections=n,
        errors=errors,
        late=late,
        timeouts=timeouts,
        **_states(completed, closed),
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
