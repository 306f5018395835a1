"""minisocket: the standard library's ``socketserver``, rebuilt one layer at a time.

``import minisocket as socketserver`` keeps socketserver code working.  The layers, in
the order the notebooks teach them (each module imports only from the ones above it):

    trace      trace events and the log, for every layer (off unless a tracer is set)
    sockets    01  the socket facts a server rests on
    loop       02  serve_forever / shutdown / handle_request: the server's selector
    pipeline   03  BaseServer: get_request -> verify -> process -> finish -> shutdown;
                   TCPServer (the socket code), UDPServer, the Unix servers
    handlers   04  BaseRequestHandler, StreamRequestHandler, DatagramRequestHandler
    mixins     05  ThreadingMixIn, ForkingMixIn and the composed servers
    pool       06  ThreadPoolMixIn: a bounded pool of worker threads
    evented    06  SelectorMixIn: one thread, every connection in one selector
"""

from .evented import (
    BusyPollSelector,
    ProtocolRequestHandler,
    SelectorMixIn,
    SelectorTCPServer,
    SelectorUnixStreamServer,
)
from .handlers import BaseRequestHandler, DatagramRequestHandler, StreamRequestHandler
from .loop import serving
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

__version__ = "0.2.0"

# fmt: off
__all__ = [
    # socketserver's names, in its order
    "BaseServer", "TCPServer", "UDPServer", "UnixStreamServer", "UnixDatagramServer",
    "ThreadingMixIn", "ForkingMixIn",
    "ThreadingTCPServer", "ThreadingUDPServer",
    "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer",
    "ForkingTCPServer", "ForkingUDPServer", "ForkingUnixStreamServer", "ForkingUnixDatagramServer",
    "BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler",
    # minisocket's own
    "ThreadPoolMixIn", "ThreadPoolTCPServer", "ThreadPoolUnixStreamServer",
    "SelectorMixIn", "SelectorTCPServer", "SelectorUnixStreamServer",
    "ProtocolRequestHandler", "BusyPollSelector",
    "TraceEvent", "TraceRecorder", "serving",
]
# fmt: on
