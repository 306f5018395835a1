"""minisocket: the standard library's ``socketserver``, rebuilt one layer at a time.

``import minisocket as socketserver`` keeps socketserver code working.  The layers, in
the order the notebooks teach them (each module imports only from the ones above it):

    trace      pipeline events, for notebooks and widgets (off unless a tracer is set)
    sockets    01  the listening socket: create, bind, listen, accept
    loop       02  serve_forever / shutdown / handle_request over selectors
    pipeline   03  get_request -> verify -> process -> finish -> shutdown_request
    handlers   04  BaseRequestHandler, StreamRequestHandler, DatagramRequestHandler
    mixins     05  ThreadingMixIn, ForkingMixIn and the composed servers
    pool       05  ThreadPoolMixIn: a bounded pool of worker threads
    evented    05  SelectorMixIn: one thread, every connection in one selector
"""

from .evented import (
    ProtocolRequestHandler,
    SelectorMixIn,
    SelectorTCPServer,
    SelectorUnixStreamServer,
)
from .handlers import BaseRequestHandler, DatagramRequestHandler, StreamRequestHandler
from .mixins import (
    ForkingMixIn,
    ForkingTCPServer,
    ForkingUDPServer,
    ForkingUnixDatagramServer,
    ForkingUnixStreamServer,
    ThreadingMixIn,
    ThreadingTCPServer,
    ThreadingUDPServer,
    ThreadingUnixDatagramServer,
    ThreadingUnixStreamServer,
)
from .pipeline import BaseServer, TCPServer, UDPServer, UnixDatagramServer, UnixStreamServer
from .pool import ThreadPoolMixIn, ThreadPoolTCPServer, ThreadPoolUnixStreamServer
from .trace import TraceEvent, TraceRecorder

__version__ = "0.1.0"

__all__ = [
    # socketserver's names
    "BaseServer",
    "TCPServer",
    "UDPServer",
    "UnixStreamServer",
    "UnixDatagramServer",
    "ThreadingMixIn",
    "ForkingMixIn",
    "ThreadingTCPServer",
    "ThreadingUDPServer",
    "ThreadingUnixStreamServer",
    "ThreadingUnixDatagramServer",
    "ForkingTCPServer",
    "ForkingUDPServer",
    "ForkingUnixStreamServer",
    "ForkingUnixDatagramServer",
    "BaseRequestHandler",
    "StreamRequestHandler",
    "DatagramRequestHandler",
    # minisocket's own
    "ThreadPoolMixIn",
    "ThreadPoolTCPServer",
    "ThreadPoolUnixStreamServer",
    "SelectorMixIn",
    "SelectorTCPServer",
    "SelectorUnixStreamServer",
    "ProtocolRequestHandler",
    "TraceEvent",
    "TraceRecorder",
]
