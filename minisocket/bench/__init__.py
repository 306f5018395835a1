"""Benchmarks: one load generator, many servers, every server in its own process.

    python -m minisocket.bench --servers blocking,select,threaded --clients 1,8,64
    python -m minisocket.bench.ratios      # minisocket against the stdlib, as ratios

``servers``  every server kind, minisocket's, the stdlib's and asyncio's, speaking the
             same echo protocol; ``python -m minisocket.bench.servers NAME`` runs one
``load``     the closed-loop load generator (its own processes, raw ``epoll``)
``runner``   starts a server, drives it with client processes, gathers the numbers
``stats``    percentiles and summaries (numpy)
``plots``    latency versus concurrency, CDFs, throughput bars (matplotlib)

Nothing here is imported by ``import minisocket``; numpy, matplotlib and tqdm come with
the ``bench`` extra (``pip install 'minisocket[bench]'``; the ``notebooks`` extra has them
too).  ``python -m minisocket.bench --help`` needs none of them.
"""
