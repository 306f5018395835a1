"""The checks behind the notebooks' exercises.

Each ``check_NN_*`` function takes the reader's answer, runs it against loopback
servers, prints one line per requirement and a verdict, and never raises: a notebook
cell that calls it shows how far the reader got.  ``tests/test_exercises.py`` runs
every check against a reference answer (it must pass) and a wrong one (it must not).
"""

from __future__ import annotations

import socket
import socketserver
from collections.abc import Callable
from typing import Any

from minisocket import TraceRecorder, lab, serving
from minisocket.handlers import StreamRequestHandler
from minisocket.lab import Check
from minisocket.mixins import ThreadingTCPServer
from minisocket.pipeline import TCPServer

__all__ = [
    "check_01_keepalive",
    "check_01_restart",
    "check_02_count_requests",
    "check_02_serve_until_quiet",
    "check_02_stop_after_three",
    "check_03_close_hang",
    "check_03_which_thread",
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


class _Goodbye:
    """A handler that says goodbye; the server then closes first (any stream server)."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        request.sendall(b"bye")


def _restart(server_class: type[Any]) -> None:
    """Serve one request (the server closes first, so its side of the connection waits
    in TIME_WAIT), close the server, and create a new one on the same port."""
    first = server_class((HOST, 0), _Goodbye)
    address = first.server_address
    try:
        with socket.create_connection(address, timeout=lab.TIMEOUT) as client:
            first.handle_request()
            client.recv(10)
    finally:
        first.server_close()
    server_class(address, _Goodbye).server_close()


def check_01_restart(server_class: type[Any], prediction: str | None) -> None:
    """Exercise 01.2: predict why a restart fails, then make the server restart."""
    import errno

    def predicted() -> bool:
        if prediction is None:
            raise NotImplementedError
        try:
            _restart(TCPServer)  # no SO_REUSEADDR: what the kernel says
        except OSError as exc:
            return prediction.strip().upper() == errno.errorcode.get(exc.errno or 0)
        return False

    def restarts() -> bool:
        try:
            _restart(server_class)
        except OSError:
            return False
        return True

    def option_set() -> bool:
        with server_class((HOST, 0), _Goodbye) as server:
            return bool(server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))

    lab.check(
        "Exercise 2",
        [
            Check("your prediction names the error the kernel gives", predicted),
            Check("the server restarts on its port at once", restarts),
            Check("its listening socket has SO_REUSEADDR", option_set),
        ],
    )


class _Hello:
    """A handler that greets and returns (any server's handler signature)."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        if isinstance(request, socket.socket):
            request.sendall(b"hello")


def _serve(server: Any) -> Any:
    import threading

    loop = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    loop.start()
    return loop


def _stop(server: Any, loop: Any) -> None:
    """Stop a loop the reader's code may have deadlocked, then close the server."""
    import threading

    if loop.is_alive():
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        loop.join(0.5)
        if loop.is_alive():  # socketserver: shutdown() on the serving thread waits forever
            released = getattr(server, "_BaseServer__is_shut_down", None)
            if released is not None:
                released.set()
            loop.join(lab.TIMEOUT)
        stopper.join(lab.TIMEOUT)
    server.server_close()


def check_02_stop_after_three(mixin: type[Any]) -> None:
    """Exercise 02.1: a mix-in after which serve_forever returns by itself after three
    requests -- under minisocket and under socketserver."""
    import socketserver

    import minisocket

    def compose(module: Any) -> Any:
        return type("Checked", (mixin, module.TCPServer), {})((HOST, 0), _Hello)

    def implemented() -> bool:
        with compose(minisocket) as server:
            return _written(server.process_request, None, None) and _written(server.service_actions)

    def stops_after(module: Any, requests: int, patience: float) -> bool:
        server = compose(module)
        loop = _serve(server)
        try:
            for _ in range(requests):
                lab.converse(server.server_address, timeout=PATIENCE)
            loop.join(patience)
            return not loop.is_alive()
        finally:
            _stop(server, loop)

    lab.check(
        "Exercise 1",
        [
            Check("the hooks are implemented", implemented),
            Check(
                "minisocket: serve_forever returns after the third request",
                lambda: stops_after(minisocket, 3, 2.0),
            ),
            Check(
                "minisocket: ...and not after the second",
                lambda: not stops_after(minisocket, 2, 0.5),
            ),
            Check(
                "socketserver: serve_forever returns after the third request",
                lambda: stops_after(socketserver, 3, 2.0),
            ),
            Check(
                "socketserver: ...and not after the second",
                lambda: not stops_after(socketserver, 2, 0.5),
            ),
        ],
    )


class _Held:
    """Greets, then holds the connection until its server's ``release`` event is set."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        request.sendall(b"hello")
        server.release.wait(lab.TIMEOUT)


def check_02_count_requests(server_class: type[Any]) -> None:
    """Exercise 02.2: a threading server whose ``requests`` counts finished requests."""
    import threading

    from minisocket.trace import TraceRecorder

    def start() -> Any:
        server = server_class((HOST, 0), _Held)
        server.release = threading.Event()
        server.tracer = TraceRecorder()
        return server, _serve(server)

    def steps(server: Any, step: str) -> int:
        return int(server.tracer.steps().count(step))

    def idle_passes(server: Any, passes: int = 3) -> bool:
        """Wait until service_actions has run *passes* more times."""
        seen = steps(server, "service_actions")
        return lab.wait_until(lambda: steps(server, "service_actions") >= seen + passes, 2.0)

    def three_finished() -> bool:
        server, loop = start()
        server.release.set()
        try:
            for _ in range(3):
                lab.converse(server.server_address, timeout=PATIENCE)
            lab.wait_until(lambda: steps(server, "close_request") == 3, 2.0)
            idle_passes(server)  # then let the loop go round idle
            return bool(server.requests == 3)
        finally:
            _stop(server, loop)

    def not_before_done() -> bool:
        server, loop = start()
        try:
            with socket.create_connection(server.server_address, timeout=PATIENCE) as client:
                client.recv(5)  # the handler runs, and holds on
                idle_passes(server)
                counted_early = server.requests
                server.release.set()
            lab.wait_until(lambda: steps(server, "close_request") == 1, 2.0)
            idle_passes(server)
            return bool(counted_early == 0 and server.requests == 1)
        finally:
            server.release.set()
            _stop(server, loop)

    lab.check(
        "Exercise 2",
        [
            Check("three finished requests count 3, however long the server idles", three_finished),
            Check("a request still being handled is not counted yet", not_before_done),
        ],
    )


def check_02_serve_until_quiet(serve_until_quiet: Any) -> None:
    """Exercise 02.3: handle requests until none arrives for `quiet` seconds."""
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
        "Exercise 3",
        [Check("serves the three requests, then returns after the quiet period", counts_and_stops)],
    )


class _Fails:
    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        raise ValueError("a failing handler")


class _QuietThreadingServer(ThreadingTCPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Traced all the same (the trace event comes first); nothing is logged."""


def _which_thread() -> dict[str, str]:
    """Trace one failing request through a ThreadingTCPServer: hook -> "loop"/"handler"."""
    server = _QuietThreadingServer((HOST, 0), _Fails)
    server.tracer = recorder = TraceRecorder()
    with serving(server):
        lab.converse(server.server_address, timeout=lab.TIMEOUT)

        def complete() -> bool:
            steps = recorder.steps()
            return (
                "close_request" in steps
                and "service_actions" in steps[steps.index("get_request") :]
            )

        lab.wait_until(complete)
    roles = lab.thread_roles(recorder.events)
    observed: dict[str, str] = {}
    for event in recorder.events:
        role = roles[event.thread]
        observed.setdefault(event.step, "handler" if role.startswith("handler") else role)
    return observed


def check_03_which_thread(prediction: dict[str, Any] | None) -> None:
    """Exercise 03.1: predict which thread runs three hooks of a ThreadingTCPServer."""
    observed: dict[str, str] = {}

    def matches(hook: str) -> Callable[[], bool]:
        def test() -> bool:
            answer = (prediction or {}).get(hook)
            if not isinstance(answer, str):  # ... or None: not answered yet
                raise NotImplementedError
            if not observed:
                observed.update(_which_thread())
            guess = answer.strip().lower()
            return (guess.split("-")[0] if guess.startswith("handler") else guess) == observed[hook]

        return test

    lab.check(
        "Exercise 1",
        [
            Check(f"{hook}: your prediction matches the trace", matches(hook))
            for hook in ("verify_request", "handle_error", "service_actions")
        ],
    )


class _EchoLines(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


def _close_with_an_idle_client(server_class: type[Any], patience: float) -> tuple[bool, bool]:
    """Serve an idle client and a talking one, shut down, then time ``server_close()``.

    Returns (the talking client was answered, server_close returned within *patience*).
    """
    import threading

    server = server_class((HOST, 0), _EchoLines)
    loop = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    loop.start()
    idle = socket.create_connection(server.server_address, timeout=lab.TIMEOUT)
    closing = threading.Thread(target=server.server_close, daemon=True)
    try:
        with socket.create_connection(server.server_address, timeout=PATIENCE) as talker:
            talker.sendall(b"ping\n")
            answered = talker.recv(100) == b"ping\n"  # the idle client was accepted before
        server.shutdown()
        loop.join(lab.TIMEOUT)
        closing.start()
        closing.join(patience)
        return answered, not closing.is_alive()
    finally:
        idle.close()  # its handler reads end of file and returns: server_close can finish
        if closing.ident is None:  # the talking client failed: stop and close here
            server.shutdown()
            closing.start()
        closing.join(lab.TIMEOUT)


def check_03_close_hang(why: str | None, server_class: type[Any] | None) -> None:
    """Exercise 03.2: why socketserver's server_close() hangs, and a class that does not."""
    results: list[tuple[bool, bool]] = []

    def diagnosis() -> bool:
        if why is None:
            raise NotImplementedError
        return why.strip().upper() == "B"

    def run() -> tuple[bool, bool]:
        if server_class is None:
            raise NotImplementedError
        if not results:
            results.append(_close_with_an_idle_client(server_class, patience=2.0))
        return results[0]

    lab.check(
        "Exercise 2",
        [
            Check("your diagnosis", diagnosis),
            Check("server_close() returns within 2 s while a client sits idle", lambda: run()[1]),
            Check("a client that talks is still answered", lambda: run()[0]),
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
            self.server.most_buffered = max(self.server.most_buffered, self.transport.buffered)

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
