"""hannoy's benchmark: loads a data set into a throwaway PostgreSQL cluster, measures a hannoy
index on it (build, size, recall and speed, updates, filters, cold start) and reports the
results as a Markdown table, JSON and PNG plots. scripts/bench.sh is the command; bench/run.py
is its Python entry point.

Modules:
    datasets      Fashion-MNIST and a seeded Gaussian mixture, as float32 matrices
    truth         exact nearest neighbours with numpy, cached; ann-benchmarks' recall
    database      connections, binary COPY, server restarts, backend memory sampling
    clients       timed query loops, one client or several processes
    measures      the measurements, one function per part of the protocol
    profiling     perf sampling of a backend running the query loop
    report        Markdown, JSON and plots, comparison with recorded baselines
"""
