"""What ``python -m minisocket.bench ratios`` compares, and the targets it judges.

Each :class:`Target` names the claim it supports; the README's benchmark section shows
the same table (:func:`markdown`), and a test keeps the two identical.  Comparisons
without a claim are reported for the notebooks, with no verdict.  Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SHUTDOWN", "TARGETS", "ShutdownTarget", "Target", "markdown"]


@dataclass(frozen=True)
class Target:
    """*ours* answers at least *minimum* times the requests per second of *theirs*."""

    ours: str
    theirs: str
    clients: int
    mode: str = "echo"  # "echo": persistent connections; "connect": one per request
    minimum: float | None = None  # None: reported, not judged
    claim: str = ""

    @property
    def label(self) -> str:
        where = f"@{self.clients}" if self.mode == "echo" else f"connect x{self.clients}"
        return f"{self.ours} / {self.theirs} {where}"


@dataclass(frozen=True)
class ShutdownTarget:
    """``shutdown()`` of a polling ``serve_forever`` returns within *maximum_ms*."""

    maximum_ms: float
    poll_interval: float
    claim: str


SHUTDOWN = ShutdownTarget(
    1.0, 0.5, "`shutdown()` returns at once, not after up to `poll_interval` (0.5 s)"
)
_ASYNCIO = "the event-driven server answers as many echoes per second as asyncio, or more"
TARGETS: tuple[Target, ...] = (
    Target(
        "select", "stdlib-threaded", 256, minimum=2.5,
        claim="one thread for all connections beats a thread per connection at 256",
    ),
    Target(
        "pool", "stdlib-threaded", 8, mode="connect", minimum=1.5,
        claim="a pool of threads beats a thread per connection for short connections",
    ),
    *(Target("select", "asyncio-protocol", n, minimum=1, claim=_ASYNCIO) for n in (1, 8, 64, 256)),
    *(Target("select", "asyncio-streams", n, minimum=1, claim=_ASYNCIO) for n in (1, 64, 256)),
    # for the notebooks: what busy polling buys, and the same model in both libraries
    Target("select-busy", "select", 1),
    Target("select-busy", "select", 8),
    Target("select-busy", "asyncio-protocol", 1),
    Target("threaded", "stdlib-threaded", 256),
)  # fmt: skip


def markdown() -> str:
    """The README's table of targets, one row per claim."""
    rows = [
        "| claim | measured as | target |",
        "| --- | --- | --- |",
        f"| {SHUTDOWN.claim} | `shutdown()` of `serve_forever(poll_interval="
        f"{SHUTDOWN.poll_interval:g})`, every trial | < {SHUTDOWN.maximum_ms:g} ms |",
    ]
    claims: dict[str, list[Target]] = {}
    for target in TARGETS:
        if target.claim:
            claims.setdefault(target.claim, []).append(target)
    for claim, targets in claims.items():
        pairs: dict[tuple[str, str, str], list[str]] = {}
        for t in targets:
            pairs.setdefault((t.ours, t.theirs, t.mode), []).append(str(t.clients))
        measured = "; ".join(
            f"`{ours}` / `{theirs}`, "
            + (f"{', '.join(levels)} clients" if mode == "echo" else f"{'/'.join(levels)} "
               "clients, a connection per request")
            for (ours, theirs, mode), levels in pairs.items()
        )  # fmt: skip
        minimum = {t.minimum for t in targets}.pop()
        rows.append(f"| {claim} | requests per second, {measured} | >= {minimum:g}x |")
    return "\n".join(rows)
