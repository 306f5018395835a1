"""The benchmark machinery: statistics, load generator, CLI, and a short soak."""

from __future__ import annotations

import numpy as np

from minisocket.bench.soak import soak


def test_short_soak_has_no_errors_and_serves_everyone() -> None:
    for server, connections in (("select", 200), ("threaded", 50)):
        cell = soak(server, connections, duration=2.0)
        assert cell["requests"] > 0
        assert (cell["errors"], cell["timeouts"], cell["unserved"]) == (0, 0, 0), cell
        assert np.all(np.array(cell["server_rss_kib"]) > 0)
