"""Timed query loops: one client, or several client processes at once.

Like the pgvector baseline's client: Python + psycopg2, autocommit, a prepared statement, the
query vector sent as a real[] literal, latency measured around EXECUTE + fetch. Statements are
formatted before timing starts, so the clock covers the round trip and the server's work, not
the formatting of 784 numbers in Python.
"""

import multiprocessing
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Pass:
    """One pass over a list of statements."""
    found: list             # per statement, the first column of the rows returned
    latencies: np.ndarray   # seconds per statement, as the client saw it
    seconds: float          # wall time of the whole pass (all clients)

    @property
    def qps(self):
        return len(self.latencies) / self.seconds


def execute_statements(cur, statements):
    """Runs each statement and fetches its rows; returns (found, latencies)."""
    found, latencies = [], np.empty(len(statements))
    clock = time.perf_counter
    for i, statement in enumerate(statements):
        started = clock()
        cur.execute(statement)
        rows = cur.fetchall()
        latencies[i] = clock() - started
        found.append([r[0] for r in rows])
    return found, latencies


def run_pass(cur, statements):
    started = time.perf_counter()
    found, latencies = execute_statements(cur, statements)
    return Pass(found, latencies, time.perf_counter() - started)


def _client_process(cluster, session_sql, statements, barrier, results, slot):
    conn = cluster.connect()
    cur = conn.cursor()
    for sql in session_sql:
        cur.execute(sql)
    execute_statements(cur, statements[: max(1, len(statements) // 10)])  # warms the new backend
    barrier.wait()
    started = time.perf_counter()  # CLOCK_MONOTONIC: comparable between processes
    found, latencies = execute_statements(cur, statements)
    results.put((slot, found, latencies, started, time.perf_counter()))
    conn.close()


def run_concurrent(cluster, session_sql, statements, clients):
    """Runs the statements split between `clients` processes, each with its own connection
    and session set-up, all starting together. Throughput is statements over the wall time
    from the first start to the last finish."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(clients)
    results = context.Queue()
    shares = [statements[i::clients] for i in range(clients)]
    processes = [context.Process(target=_client_process,
                                 args=(cluster, session_sql, shares[i], barrier, results, i))
                 for i in range(clients)]
    for p in processes:
        p.start()
    collected = [results.get() for _ in processes]  # before join: a full queue blocks the child
    for p in processes:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a benchmark client process failed (exit code {p.exitcode})")
    found = [None] * len(statements)
    latencies = np.empty(len(statements))
    for slot, client_found, client_latencies, _, _ in collected:
        positions = range(slot, len(statements), clients)
        for position, ids, latency in zip(positions, client_found, client_latencies):
            found[position] = ids
            latencies[position] = latency
    wall = max(r[4] for r in collected) - min(r[3] for r in collected)
    return Pass(found, latencies, wall)
