"""The checks behind the notebooks' exercises.

Each ``check_NN_*`` function takes the reader's answer, runs it against loopback
servers, prints one line per requirement and a verdict, and never raises: a notebook
cell that calls it shows how far the reader got.  ``tests/test_exercises.py`` runs
every check against a reference answer (it must pass) and a wrong one (it must not).
"""

from __future__ import annotations

import socket
from typing import Any

from minisocket import lab, serving
from minisocket.handlers import StreamRequestHandler
from minisocket.lab import Check
from minisocket.mixins import ThreadingTCPServer

__all__ = [
    "check_01_backlog",
    "check_01_keepalive",
    "check_02_serve_until_quiet",
    "check_02_stop_after_three",
    "check_03_allow_list",
    "check_03_count_errors",
    "check_04_adder",
    "check_04_upper_echo",
    "check_05_predict_backwards",
    "check_05_fork_counter",
    "check_05_close_time",
    "check_06_predict_pool",
    "check_06_line_counter",
    "check_06_numbers",
]

HOST = "127.0.0.1"
PATIENCE = 1.0  # seconds a check waits for a reply before calling it missing


def _written(function: Any, *args: Any) -> bool:
    """Call a reader's function on dummy arguments: only a stub's NotImplementedError
    counts; any other failure means the function has a body (checked properly later)."""
    try:
        function(*args)
    except NotImplementedError:
        raise
    except Exception:
        pass
    return True


def check_01_keepalive(server_class: type[Any]) -> None:
    """Exercise 01.1: a TCPServer whose server_bind also turns on SO_KEEPALIVE."""

    def keepalive_on_listener() -> bool:
        with server_class((HOST, 0), object) as server:
            return bool(server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))

    def still_records_address() -> bool:
        with server_class((HOST, 0), object) as server:
            return bool(server.server_address[1] > 0)

    def inherited_by_connections() -> bool:
        with server_class((HOST, 0), object) as server:
            with socket.create_connection(server.server_address, timeout=lab.TIMEOUT):
                request, _ = server.get_request()
                with request:
                    return bool(request.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))

    lab.check(
        "Exercise 1",
        [
            Check("the listening socket has SO_KEEPALIVE", keepalive_on_listener),
            Check("server_address still holds the port the kernel chose", still_records_address),
            Check("accepted connections inherit SO_KEEPALIVE", inherited_by_connections),
        ],
    )


def check_01_backlog(answer: int | None) -> None:
    """Exercise 01.2: predict how many of 10 connects a listen(2) socket completes."""

    def correct() -> bool:
        if answer is None:
            raise NotImplementedError
        return answer == lab.connect_burst(2)

    lab.check("Exercise 2", [Check("your prediction matches the kernel", correct)])


class _Hello:
    """A handler that greets and returns (any server's handler signature)."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        if isinstance(request, socket.socket):
            request.sendall(b"hello")


def check_02_stop_after_three(server_class: type[Any]) -> None:
    """Exercise 02.1: serve_forever returns by itself after three requests."""
    import threading

    def implemented() -> bool:
        with server_class((HOST, 0), _Hello) as server:
            return _written(server.service_actions)

    def stops_after_three() -> bool:
        with server_class((HOST, 0), _Hello) as server:
            loop = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            loop.start()
            for _ in range(3):
                lab.converse(server.server_address, timeout=PATIENCE)
            loop.join(2)
            if loop.is_alive():
                server.shutdown()
                loop.join(lab.TIMEOUT)
                return False
            return True

    def not_before_three() -> bool:
        with server_class((HOST, 0), _Hello) as server:
            loop = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            loop.start()
            for _ in range(2):
                lab.converse(server.server_address, timeout=PATIENCE)
            loop.join(0.3)
            still_serving = loop.is_alive()
            server.shutdown()
            loop.join(lab.TIMEOUT)
            return still_serving

    lab.check(
        "Exercise 1",
        [
            Check("the hooks are implemented", implemented),
            Check("serve_forever returns after the third request", stops_after_three),
            Check("...and not after the second", not_before_three),
        ],
    )


def check_02_serve_until_quiet(serve_until_quiet: Any) -> None:
    """Exercise 02.2: handle requests until none arrives for `quiet` seconds."""
    import threading
    import time

    from minisocket.pipeline import TCPServer

    def counts_and_stops() -> bool:
        with TCPServer((HOST, 0), _Hello) as server:

            def clients() -> None:
                try:
                    for _ in range(3):
                        lab.converse(server.server_address, timeout=PATIENCE)
                        time.sleep(0.05)
                except OSError:
                    pass  # the reader's function stopped serving early

            sender = threading.Thread(target=clients)
            sender.start()
            started = time.monotonic()
            served = serve_until_quiet(server, 0.3)
            elapsed = time.monotonic() - started
            sender.join()
            return bool(served == 3 and elapsed < 2)

    lab.check(
        "Exercise 2",
        [Check("serves the three requests, then returns after the quiet period", counts_and_stops)],
    )


def check_03_allow_list(server_class: type[Any]) -> None:
    """Exercise 03.1: verify_request lets 127.0.0.2 in and keeps everyone else out."""

    def serve(source: str) -> bytes:
        with server_class((HOST, 0), _Hello) as server:
            with socket.socket() as client:
                client.settimeout(lab.TIMEOUT)
                client.bind((source, 0))
                client.connect(server.server_address)
                server.handle_request()
                return client.recv(100)

    def accepts() -> bool:
        return serve("127.0.0.2") == b"hello"

    def rejects() -> bool:
        return serve("127.0.0.1") == b""

    lab.check(
        "Exercise 1",
        [
            Check("a client from 127.0.0.2 gets its greeting", accepts),
            Check("a client from 127.0.0.1 is turned away", rejects),
        ],
    )


class _Fails:
    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        raise ValueError("a failing handler")


def check_03_count_errors(server_class: type[Any]) -> None:
    """Exercise 03.2: handle_error counts failures in self.errors."""

    def counts() -> bool:
        with server_class((HOST, 0), _Fails) as server:
            for _ in range(3):
                with socket.create_connection(server.server_address, timeout=lab.TIMEOUT):
                    server.handle_request()
            return bool(server.errors == 3)

    def starts_at_zero() -> bool:
        with server_class((HOST, 0), _Fails) as server:
            return bool(server.errors == 0)

    lab.check(
        "Exercise 2",
        [
            Check("three failing requests count three errors", counts),
            Check("a new server starts at zero", starts_at_zero),
        ],
    )


class _ExerciseServer(ThreadingTCPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The checks report what went wrong; a traceback would only add noise."""


def _serve_threaded(handler_class: type[Any]) -> _ExerciseServer:
    return _ExerciseServer((HOST, 0), handler_class)


def check_04_upper_echo(handler_class: type[Any]) -> None:
    """Exercise 04.1: an upper-case echo that stops at end of file."""
    import threading

    def implemented() -> bool:
        return _written(handler_class.handle, type("Probe", (), {"request": None})())

    def echoes() -> bool:
        with serving(_serve_threaded(handler_class)) as server:
            reply = lab.converse(server.server_address, b"hello, ", b"world", timeout=PATIENCE)
            return reply == b"HELLO, WORLD"

    def stops() -> bool:
        with serving(_serve_threaded(handler_class)) as server:
            lab.converse(server.server_address, b"bye", timeout=PATIENCE)
            threads = [t for t in threading.enumerate() if "process_request" in t.name]
            return lab.wait_until(lambda: not any(t.is_alive() for t in threads), 1.0)

    lab.check(
        "Exercise 1",
        [
            Check("handle() is written", implemented),
            Check("everything comes back upper-cased", echoes),
            Check("the handler returns when the client closes", stops),
        ],
    )


def check_04_adder(handler_class: type[Any]) -> None:
    """Exercise 04.2: a line protocol that adds integers."""

    def implemented() -> bool:
        return _written(handler_class.handle, type("Probe", (), {"rfile": None, "wfile": None})())

    def adds() -> bool:
        with serving(_serve_threaded(handler_class)) as server:
            reply = lab.converse(server.server_address, b"1 2 3\n40 2\n-5\n", timeout=PATIENCE)
            return reply == b"6\n42\n-5\n"

    def rejects() -> bool:
        with serving(_serve_threaded(handler_class)) as server:
            return lab.converse(server.server_address, b"1 two\n", timeout=PATIENCE) == b"ERR\n"

    lab.check(
        "Exercise 2",
        [
            Check("handle() is written", implemented),
            Check("sums arrive one line per line", adds),
            Check("a line that is not all integers gets ERR", rejects),
        ],
    )


# -- 05 -------------------------------------------------------------------------------


class _MeetOne:
    """Replies b"together" if a second handler arrives within 0.5 s, else b"alone"."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        import threading

        try:
            server.barrier.wait(timeout=0.5)
            request.sendall(b"together")
        except threading.BrokenBarrierError:
            request.sendall(b"alone")


def _owner(cls: type[Any], name: str) -> str:
    return next(c.__name__ for c in cls.__mro__ if name in vars(c))


def check_05_predict_backwards(server_class: type[Any], prediction: dict[str, Any]) -> None:
    """Exercise 05.1: predict what a server with its bases the wrong way round does."""
    import threading

    def predicted() -> bool:
        if any(prediction.get(key) is None for key in _BACKWARDS_KEYS):
            raise NotImplementedError
        return True

    def concurrent() -> bool:
        server = server_class((HOST, 0), _MeetOne)
        server.barrier = threading.Barrier(2)
        replies: list[bytes] = []
        with serving(server):
            clients = [
                threading.Thread(
                    target=lambda: replies.append(
                        lab.converse(server.server_address, timeout=lab.TIMEOUT)
                    )
                )
                for _ in range(2)
            ]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
        return replies == [b"together"] * 2

    def matches(key: str) -> Check:
        def test() -> bool:
            if key == "concurrent":
                return bool(prediction[key] == concurrent())
            return bool(prediction[key] == _owner(server_class, key))

        return Check(f"{key}: your prediction matches", test)

    lab.check(
        "Exercise 1",
        [Check("every entry is predicted", predicted)] + [matches(k) for k in _BACKWARDS_KEYS],
    )


_BACKWARDS_KEYS = ("process_request", "server_close", "concurrent")


class _ReplyPid:
    """Replies with the serving process's id."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        import os

        request.sendall(str(os.getpid()).encode())


def check_05_fork_counter(server_class: type[Any], handler_class: type[Any]) -> None:
    """Exercise 05.2: a forking server that counts its requests in the parent."""
    import os

    def serve_three() -> tuple[Any, set[bytes]]:
        server = server_class((HOST, 0), handler_class)
        with serving(server):
            replies = {lab.converse(server.server_address, timeout=lab.TIMEOUT) for _ in range(3)}
        return server, replies

    def counts() -> bool:
        server, _ = serve_three()
        return bool(server.served == 3)

    def in_children() -> bool:
        _, replies = serve_three()
        return len(replies) == 3 and str(os.getpid()).encode() not in replies

    def starts_at_zero() -> bool:
        with server_class((HOST, 0), handler_class) as server:
            return bool(server.served == 0)

    lab.check(
        "Exercise 2",
        [
            Check("served is 3 after three requests", counts),
            Check("each request is served in a child process of its own", in_children),
            Check("a new server starts at 0", starts_at_zero),
        ],
    )


class _IdleClient:
    """Sets server.entered, then waits in recv() for a client that sends nothing."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        entered = getattr(server, "entered", None)
        if entered is not None:
            entered.set()
        request.recv(1)


class _StuckHandler:
    """Sets server.entered, then waits 1.5 s on something other than its socket."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        import time

        entered = getattr(server, "entered", None)
        if entered is not None:
            entered.set()
        time.sleep(1.5)


CLOSE_GRACE = 0.3  # what check_05_close_time measures with


def check_05_close_time(close_time: Any, multiples: dict[str, Any]) -> None:
    """Exercise 05.3: measure server_close's bound, and state it as a rule."""
    truth = {"idle client": 1, "stuck handler": 2}
    handlers = {"idle client": _IdleClient, "stuck handler": _StuckHandler}
    measured: dict[str, float] = {}

    def measures(case: str) -> Check:
        def test() -> bool:
            measured[case] = float(close_time(handlers[case], CLOSE_GRACE))
            expected = truth[case] * CLOSE_GRACE
            return 0.8 * expected <= measured[case] <= expected + 0.5

        return Check(f"close_time measures server_close() with one {case}", test)

    def rule(case: str) -> Check:
        def test() -> bool:
            if multiples.get(case) is None:
                raise NotImplementedError
            return abs(float(multiples[case]) - truth[case]) <= 0.25

        return Check(f"your rule for one {case} matches", test)

    lab.check(
        "Exercise 3",
        [
            measures("idle client"),
            measures("stuck handler"),
            rule("idle client"),
            rule("stuck handler"),
        ],
    )


# -- 06 -------------------------------------------------------------------------------


class _LineEcho(StreamRequestHandler):
    """Echoes lines until the client half-closes (a persistent connection)."""

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


POOL_CLIENTS = 8  # check_06_predict_pool's experiment: 8 clients that stay connected ...
POOL_WORKERS, POOL_QUEUE = 4, 2  # ... against max_workers = 4, queue_size = 2


def _pool_experiment() -> list[str]:
    """Connect POOL_CLIENTS persistent clients one after another; say what became of each:
    "served" (its line came back), "refused" (end of file at once) or "queued"."""
    import selectors
    import time

    from minisocket import ThreadPoolTCPServer, TraceRecorder

    server = ThreadPoolTCPServer((HOST, 0), _LineEcho)
    server.max_workers, server.queue_size = POOL_WORKERS, POOL_QUEUE
    server.tracer = recorder = TraceRecorder()
    fates: dict[socket.socket, str] = {}
    with serving(server):
        clients = []
        for n in range(1, POOL_CLIENTS + 1):
            clients.append(socket.create_connection(server.server_address, timeout=lab.TIMEOUT))

            def processed(n: int = n) -> bool:
                # Settled: accepted, and running in a worker if one was free.  (A worker
                # that has taken a connection but not yet registered it still counts as
                # idle, so the queue would take one more: wait until it has.)
                steps = recorder.steps()
                return steps.count("process_request") == n and steps.count("setup") == min(
                    n, POOL_WORKERS
                )

            lab.wait_until(processed)
        for client in clients:
            client.sendall(b"ping\n")
        answering = POOL_CLIENTS - POOL_QUEUE  # the served and the refused answer at once
        deadline = time.monotonic() + 2 * PATIENCE
        with selectors.DefaultSelector() as waiting:
            for client in clients:
                waiting.register(client, selectors.EVENT_READ, client)
            while len(fates) < answering and (left := deadline - time.monotonic()) > 0:
                for key, _ in waiting.select(left):
                    client = key.data
                    waiting.unregister(client)
                    try:
                        fates[client] = "served" if client.recv(5) == b"ping\n" else "refused"
                    except ConnectionError:
                        fates[client] = "refused"
        for client in clients:  # leave: each one still queued is served, then ends
            try:
                client.shutdown(socket.SHUT_WR)
                lab.recv_all(client)
            except OSError:
                pass
            client.close()
    return [fates.get(client, "queued") for client in clients]


def check_06_predict_pool(prediction: list[Any]) -> None:
    """Exercise 06.1: predict the fate of 8 persistent clients of a small pool."""
    happened: list[str] = []

    def predicted() -> bool:
        if len(prediction) != POOL_CLIENTS or None in prediction:
            raise NotImplementedError
        happened.extend(_pool_experiment())
        return True

    def matches(fate: str) -> Check:
        def test() -> bool:
            ours = [i for i, p in enumerate(prediction) if p == fate]
            return ours == [i for i, h in enumerate(happened) if h == fate]

        return Check(f"the clients you predicted {fate} were {fate}", test)

    lab.check(
        "Exercise 1",
        [Check("every client has a prediction", predicted)]
        + [matches(fate) for fate in ("served", "queued", "refused")],
    )


def check_06_line_counter(handler_class: type[Any]) -> None:
    """Exercise 06.2: count complete lines across arbitrary chunks."""
    import time

    from minisocket.evented import SelectorTCPServer

    def implemented() -> bool:
        probe = handler_class(None, None, None)
        probe.send = lambda data: None
        return _written(probe.data_received, b"x\n")

    def talk(*chunks: bytes) -> bytes:
        with serving(SelectorTCPServer((HOST, 0), handler_class)) as server:
            with socket.create_connection(server.server_address, timeout=PATIENCE) as client:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for chunk in chunks:
                    client.sendall(chunk)
                    time.sleep(0.02)  # most likely separate data_received calls
                client.shutdown(socket.SHUT_WR)
                return lab.recv_all(client)

    lab.check(
        "Exercise 2",
        [
            Check("data_received is written", implemented),
            Check("one line at a time", lambda: talk(b"a\n", b"b\n") == b"1\n2\n"),
            Check(
                "lines split across pieces",
                lambda: talk(b"hel", b"lo\nwor", b"ld\n") == b"1\n2\n",
            ),
            Check("several lines in one piece", lambda: talk(b"x\ny\nz\n") == b"1\n2\n3\n"),
        ],
    )


NUMBERS = 200_000  # check_06_numbers: the lines b"0\n" ... b"199999\n", about 1.3 MB


def check_06_numbers(handler_class: type[Any]) -> None:
    """Exercise 06.3: a streaming handler that honours pause_writing/resume_writing."""
    from minisocket import TraceRecorder
    from minisocket.evented import SelectorTCPServer

    expected = b"".join(b"%d\n" % i for i in range(NUMBERS))

    class Probe(handler_class):  # type: ignore[misc]
        """The reader's handler, with a small kernel buffer and a record of its own."""

        def connection_made(self) -> None:
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            self.server.most_buffered = 0
            super().connection_made()

        def send(self, data: Any) -> None:
            super().send(data)
            self.server.most_buffered = max(self.server.most_buffered, self.buffered)

    def implemented() -> bool:
        probe = handler_class(None, None, None)
        probe.send = lambda data: None
        probe.close = lambda: None
        return _written(probe.connection_made)

    received: dict[str, Any] = {}

    def run() -> dict[str, Any]:
        if not received:
            server = SelectorTCPServer((HOST, 0), Probe)
            server.tracer = recorder = TraceRecorder()
            with serving(server):
                with socket.socket() as client:
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                    client.settimeout(PATIENCE)
                    client.connect(server.server_address)

                    # a slow reader: nothing is read until connection_made has returned
                    # (the loop has gone on to service_actions)
                    def returned() -> bool:
                        steps = recorder.steps()
                        made = (
                            steps.index("connection_made") if "connection_made" in steps else None
                        )
                        return made is not None and "service_actions" in steps[made:]

                    lab.wait_until(returned, lab.TIMEOUT)
                    data = bytearray()
                    try:
                        while chunk := client.recv(65536):
                            data += chunk
                        received["ended"] = True
                    except TimeoutError:
                        received["ended"] = False
            received["data"] = bytes(data)
            received["most"] = getattr(server, "most_buffered", None)
            received["high_water"] = handler_class.high_water
        return received

    lab.check(
        "Exercise 3",
        [
            Check("connection_made is written", implemented),
            Check("every line arrives, in order", lambda: run()["data"] == expected),
            Check("the connection ends after the last line", lambda: run()["ended"]),
            Check(
                "the server never buffers more than high_water + 16 KiB",
                lambda: (
                    run()["most"] is not None and run()["most"] <= run()["high_water"] + 16 * 1024
                ),
            ),
        ],
    )
