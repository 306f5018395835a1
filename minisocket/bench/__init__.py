"""Benchmarks: one load generator, many servers, every server in its own process.

    python -m minisocket.bench run --servers blocking,select,threaded --clients 1,8,64
    python -m minisocket.bench ratios     # minisocket against the stdlib, as ratios
    python -m minisocket.bench soak       # many connections, long: no errors, flat memory
    python -m minisocket.bench record notebooks/data    # the runs notebook 07 plots

``kinds``    every server kind (minisocket's, the stdlib's, asyncio's) and the named sets
             of them, defined once for the bench, the server panel and the tests
``servers``  the kinds speaking one echo protocol, with a fixed amount of work per slow
             request; ``python -m minisocket.bench.servers NAME`` runs one
``load``     the closed-loop load generator (its own processes, raw ``epoll``)
``runner``   starts a server, drives it with client processes, measures one window
``stats``    percentiles and summaries (numpy)
``report``   the table printer
``targets``  what ``ratios`` compares, and the claims its targets support
``ratios``   the comparisons, run by run, with verdicts
``record``   recorded runs: the ``meta`` block, the format check, the reference run
``soak``     the soak test
``plots``    latency versus concurrency, CDFs, throughput, who got an answer (matplotlib)

Nothing here is imported by ``import minisocket``; numpy, matplotlib and tqdm come with
the ``bench`` extra (``pip install 'minisocket[bench]'``; the ``notebooks`` extra has them
too).  ``python -m minisocket.bench --help`` and ``minisocket.bench.kinds`` need none of
them.
"""
