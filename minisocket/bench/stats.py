"""Latency statistics with numpy: percentiles, summaries, CDF points."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["PERCENTILES", "cdf_points", "percentiles", "summarize"]

PERCENTILES = (50, 90, 99)


def percentiles(
    latencies_ns: npt.ArrayLike, points: Sequence[float] = PERCENTILES
) -> dict[str, float]:
    """``{"p50_ms": ..., "p90_ms": ..., "p99_ms": ..., "max_ms": ...}`` (NaN when empty).

    Percentiles use numpy's default linear interpolation between order statistics.
    """
    data = np.asarray(latencies_ns, dtype=np.float64) / 1e6
    if data.size == 0:
        return {**{f"p{p:g}_ms": float("nan") for p in points}, "max_ms": float("nan")}
    values = np.percentile(data, points)
    out = {f"p{p:g}_ms": float(v) for p, v in zip(points, values, strict=True)}
    out["max_ms"] = float(data.max())
    return out


def cdf_points(latencies_ns: npt.ArrayLike, n: int = 201) -> list[float]:
    """Latency in ms at *n* evenly spaced quantiles from 0 to 1: a compact CDF."""
    data = np.asarray(latencies_ns, dtype=np.float64) / 1e6
    if data.size == 0:
        return []
    return [float(v) for v in np.quantile(data, np.linspace(0.0, 1.0, n))]


def summarize(
    latencies_ns: npt.ArrayLike, duration: float, slow: bool = False, **counters: Any
) -> dict[str, Any]:
    """Percentiles, throughput (requests per second of *duration*) and *counters*.

    Every figure describes the *answered* requests: a client that got no answer adds
    nothing here (the runner counts such clients apart).  Negative latencies mark slow
    requests (see :mod:`minisocket.bench.load`): the overall figures use every request;
    with *slow*, ``normal_*`` and ``slow_*`` figures describe each kind on its own
    (NaN when there were none).
    """
    signed = np.asarray(latencies_ns, dtype=np.int64)
    data = np.abs(signed)
    summary: dict[str, Any] = {
        "requests": int(data.size),
        "throughput": float(data.size / duration) if duration > 0 else float("nan"),
        "mean_ms": float(data.mean() / 1e6) if data.size else float("nan"),
        **percentiles(data),
        "cdf_ms": cdf_points(data),
    }
    if slow:
        is_slow = signed < 0
        normal = signed[~is_slow]
        summary["slow_requests"] = int(is_slow.sum())
        summary.update({f"normal_{k}": v for k, v in percentiles(normal).items()})
        summary.update({f"slow_{k}": v for k, v in percentiles(-signed[is_slow]).items()})
        summary["normal_cdf_ms"] = cdf_points(normal)
    return {**summary, **counters}
