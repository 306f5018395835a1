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
    "check_05_compose",
    "check_05_line_counter",
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


class _SlowEcho:
    """Waits 0.2 s, then echoes one read (any stream server)."""

    def __init__(self, request: Any, client_address: Any, server: Any) -> None:
        import time

        data = request.recv(1024)
        time.sleep(0.2)
        request.sendall(data)


def check_05_compose(server_class: type[Any] | None) -> None:
    """Exercise 05.1: a composed threading TCP server."""
    import threading
    import time

    from minisocket.mixins import ThreadingMixIn
    from minisocket.pipeline import TCPServer

    def composed() -> bool:
        if server_class is None:
            raise NotImplementedError
        return issubclass(server_class, ThreadingMixIn) and issubclass(server_class, TCPServer)

    def mixin_first() -> bool:
        assert server_class is not None
        mro = server_class.__mro__
        return mro.index(ThreadingMixIn) < mro.index(TCPServer)

    def concurrent() -> bool:
        assert server_class is not None
        with serving(server_class((HOST, 0), _SlowEcho)) as server:
            replies: list[bytes] = []
            clients = [
                threading.Thread(
                    target=lambda: replies.append(
                        lab.converse(server.server_address, b"hi", timeout=PATIENCE)
                    )
                )
                for _ in range(2)
            ]
            started = time.monotonic()
            for c in clients:
                c.start()
            for c in clients:
                c.join()
            return replies == [b"hi", b"hi"] and time.monotonic() - started < 0.38

    lab.check(
        "Exercise 1",
        [
            Check("it is a ThreadingMixIn and a TCPServer", composed),
            Check("the mix-in comes first in the MRO", mixin_first),
            Check("two slow clients are served at the same time", concurrent),
        ],
    )


def check_05_line_counter(handler_class: type[Any]) -> None:
    """Exercise 05.2: count complete lines across arbitrary chunks."""
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
                    time.sleep(0.02)  # separate segments, so separate data_received calls
                client.shutdown(socket.SHUT_WR)
                received = b""
                while data := client.recv(1024):
                    received += data
                return received

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
