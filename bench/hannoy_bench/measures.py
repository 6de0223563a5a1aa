"""The measurements of the benchmark protocol, one function per part.

Every measure takes the Bench (cluster, data, plan, the table as the client knows it, the
ground truth) and stores its figures under its own key of bench.results. run.py calls them in
the order of MEASURES; a new measurement is a function here and a line there. Measures that
time something run it plan.runs times and report the median: the machine is shared and
other work only ever adds time.
"""

import os
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import psycopg2

from . import clients, database, truth
from .database import BenchError

INDEX = "items_embedding_idx"
KNN_SQL = "SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 10"
FILTERED_SQL = "SELECT id FROM items WHERE label = $2 ORDER BY embedding <-> $1 LIMIT 10"
SETTINGS = ("shared_buffers", "work_mem", "maintenance_work_mem", "max_parallel_maintenance_workers",
            "jit", "fsync", "synchronous_commit", "plan_cache_mode")
# Ground-truth depth: enough neighbours per query that after deleting 10% of the rows the 10
# nearest live ones are still known exactly (checked by truth.without).
TRUTH_DEPTH = 100
# ef_search of the recall checks after updates (the baseline's).
UPDATE_EF = 40
# A pass longer than this is not repeated: it already averages over the machine's noise.
LONG_PASS_SECONDS = 30
# VACUUM is cancelled after this long (pgvector needs 100 s for the same work).
VACUUM_TIMEOUT_SECONDS = 180


@dataclass
class Plan:
    """How much of the protocol to run; FULL is the documented protocol, QUICK a smoke run."""
    name: str
    queries: int                 # queries of the sweep (a seeded sample when fewer than all)
    runs: int                    # passes per timed measurement; the median is reported
    ef_sweep: list
    clients: list                # concurrent client counts
    concurrent_ef: list
    build_configs: list          # (maintenance_work_mem, max_parallel_maintenance_workers); last kept
    build_runs: int
    exact_queries: int
    filtered_queries: int
    filtered_ef: list
    inserts: int                 # rows inserted one by one, in one transaction and in autocommit each
    copy_rows: int
    delete_fraction: float
    cold_runs: int
    profile_seconds: float
    small_memory_queries: int = 1000
    small_memory_fractions: list = field(default_factory=lambda: [0.5, 0.75])
    small_memory_ef: list = field(default_factory=lambda: [40, 160])
    m: int = 16
    ef_construction: int = 64

    def scaled(self, queries=None, runs=None, build_runs=None):
        """The plan with other query and run counts (command-line overrides)."""
        changes = {k: v for k, v in (("queries", queries), ("runs", runs), ("build_runs", build_runs)) if v}
        return Plan(**{**asdict(self), **changes})


FULL = Plan(name="full", queries=10_000, runs=3, ef_sweep=[10, 20, 40, 80, 160, 320], clients=[2, 4],
            concurrent_ef=[10, 40, 160],
            build_configs=[("2GB", 1), ("64MB", 0), ("2GB", 0)], build_runs=3, exact_queries=100,
            filtered_queries=1000, filtered_ef=[40, 160], inserts=10_000, copy_rows=100_000,
            delete_fraction=0.1, cold_runs=3, profile_seconds=20)
QUICK = Plan(name="quick", queries=1000, runs=1, ef_sweep=[10, 40, 160], clients=[2], concurrent_ef=[40],
             build_configs=[("2GB", 0)], build_runs=1, exact_queries=10, filtered_queries=200,
             filtered_ef=[40], inserts=500, copy_rows=2000, delete_fraction=0.1, cold_runs=1,
             profile_seconds=8, small_memory_queries=200, small_memory_fractions=[0.5], small_memory_ef=[40])


@dataclass
class Bench:
    cluster: database.Cluster
    dataset: object
    plan: Plan
    cache_dir: str
    log: object
    results: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.dataset.queries)
        count = min(self.plan.queries, n)
        rng = np.random.default_rng(1)
        self.query_rows = np.arange(n) if count == n else np.sort(rng.choice(n, count, replace=False))
        self.queries = self.dataset.queries[self.query_rows]
        self.query_labels = self.dataset.query_labels[self.query_rows]
        # The table as the client knows it, indexed by id: what recall is computed against.
        self.vectors = self.dataset.vectors
        self.labels = self.dataset.labels
        self.live = np.ones(len(self.vectors), dtype=bool)
        self.truth = None
        self.conn = None
        self._literals = None

    # --- connection ---
    def connect(self):
        self.conn = self.cluster.connect()
        self.cur = self.conn.cursor()
        self.cur.execute("SELECT pg_backend_pid()")
        self.pid = self.cur.fetchone()[0]
        return self.cur

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # --- queries ---
    def literals(self):
        if self._literals is None:
            self._literals = [database.vector_literal(v) for v in self.queries]
        return self._literals

    def statements(self, template, *extra_columns, rows=None):
        """EXECUTE statements, one per query (or per query in rows), formatted in advance."""
        literals = self.literals()
        rows = range(len(literals)) if rows is None else rows
        return [self.cur.mogrify(template, (literals[i],) + tuple(c[i] for c in extra_columns)) for i in rows]

    def knn_session(self, ef=None):
        """Session set-up of a k-NN client: a generic plan, planned once, like an application's
        prepared statement."""
        sql = ["SET plan_cache_mode = force_generic_plan",
               f"PREPARE knn(real[]) AS {KNN_SQL}"]
        return sql + ([f"SET hannoy.ef_search = {int(ef)}"] if ef else [])

    def prepare_knn(self):
        """Sets up this session's k-NN statement unless it already has it."""
        self.cur.execute("SELECT 1 FROM pg_prepared_statements WHERE name = 'knn'")
        if self.cur.fetchone() is None:
            for sql in self.knn_session():
                self.cur.execute(sql)

    def recall(self, found, kth, rows=None):
        """Recall of `found` (ids per query), counting deleted rows as misses."""
        queries = self.queries if rows is None else self.queries[rows]
        live_found = [[i for i in ids if i < len(self.live) and self.live[i]] for ids in found]
        return truth.recall(live_found, kth, self.vectors, queries)

    def grow_table(self, ids, labels, vectors):
        """Records rows added to the table (ids are consecutive from the current end)."""
        assert ids[0] == len(self.vectors)
        self.vectors = np.concatenate([self.vectors, vectors])
        self.labels = np.concatenate([self.labels, labels])
        self.live = np.concatenate([self.live, np.ones(len(ids), dtype=bool)])


def median(values):
    return float(np.median(values))


def timing_summary(passes):
    """Median throughput over passes; latency percentiles over all their queries."""
    latencies = np.concatenate([p.latencies for p in passes]) * 1e3
    return {"qps": median([p.qps for p in passes]), "qps_runs": [round(p.qps, 1) for p in passes],
            "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
            "mean_ms": float(latencies.mean())}


def repeated_passes(cur, statements, runs):
    """`runs` passes over the statements, or a single one when it takes over LONG_PASS_SECONDS."""
    passes = [clients.run_pass(cur, statements)]
    while len(passes) < runs and passes[0].seconds < LONG_PASS_SECONDS:
        passes.append(clients.run_pass(cur, statements))
    return passes


def explain(cur, statement):
    cur.execute(b"EXPLAIN (COSTS OFF) " + statement)
    return [r[0] for r in cur.fetchall()]


def require_index_scan(cur, statement, index=INDEX):
    plan = explain(cur, statement)
    if not any(f"Index Scan using {index}" in line for line in plan):
        raise BenchError(f"the query does not use the index {index}:\n  " + "\n  ".join(plan))
    return plan


def ef_sweep(bench, cur, statements, setting, label):
    """One client's passes over `statements` for each ef_search of the plan, `setting` (the
    search's ef_search GUC) set before each; returns one row per ef_search with recall and the
    median timing. Runs go over the whole sweep in turn, so a burst of other work on the machine
    slows one pass of every ef_search rather than all passes of one."""
    return ef_sweeps(bench, [(cur, statements, setting, label)])[0]


def ef_sweeps(bench, systems):
    """ef_sweep() of several systems, each (cursor, statements, setting, label), with their runs
    interleaved: run 1 of each, then run 2 of each... so that the machine's speed drifting
    during the measure (it does, by 20-50% on a shared VM) affects them all alike."""
    plan = bench.plan
    kth = bench.truth.kth_distance()
    passes = []
    for cur, statements, setting, _ in systems:
        cur.execute(f"SET {setting} = 40")
        clients.run_pass(cur, statements)  # warm-up: the index and the table into memory
        passes.append({ef: [] for ef in plan.ef_sweep})
    for run in range(plan.runs):
        for (cur, statements, setting, label), by_ef in zip(systems, passes):
            for ef in plan.ef_sweep:
                cur.execute(f"SET {setting} = %s", (ef,))
                by_ef[ef].append(clients.run_pass(cur, statements))
            bench.log(f"  {label}run {run + 1} of {plan.runs}: " + ", ".join(
                f"ef {ef} {by_ef[ef][-1].qps:,.0f}" for ef in plan.ef_sweep) + " queries/s")
    sweeps = []
    for (cur, _, setting, label), by_ef in zip(systems, passes):
        rows = [{"ef_search": ef, "clients": 1, "recall": bench.recall(by_ef[ef][0].found, kth),
                 **timing_summary(by_ef[ef])} for ef in plan.ef_sweep]
        for row in rows:
            bench.log(f"  {label}ef_search {row['ef_search']:>4}: recall {row['recall']:.4f}, {row['qps']:,.0f} "
                      f"queries/s, p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms")
        cur.execute(f"RESET {setting}")
        sweeps.append(rows)
    return sweeps


# The memory-limited searches: the least a limit may be (the backend's own memory, about 30 MB,
# and the shared buffers it touches are charged too and cannot be paged out), and the shared
# buffers the server runs with meanwhile (the index does not use them; the heap fetches do).
SMALL_MEMORY_FLOOR = 96 * 2**20
SMALL_MEMORY_SHARED_BUFFERS = "16MB"


# --- the measures --------------------------------------------------------------------------------

def environment(bench):
    cur = bench.cur
    cur.execute("CREATE EXTENSION IF NOT EXISTS hannoy")  # a new cluster has none yet
    cur.execute("SELECT current_setting('server_version'), hannoy_kernels(), "
                "(SELECT extversion FROM pg_extension WHERE extname = 'hannoy')")
    version, kernels, extversion = cur.fetchone()
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        memory = int(f.readline().split()[1]) * 1024
    os_name = "unknown"
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
            os_name = fields.get("PRETTY_NAME", "unknown").strip('"')
    bench.results["environment"] = {
        "postgresql": version, "hannoy_version": extversion, "hannoy_kernels": kernels,
        "cpu": cpu, "cores": os.cpu_count(), "memory_bytes": memory, "os": os_name,
        "load_average_at_start": os.getloadavg(),
        "settings": database.server_settings(cur, SETTINGS)}
    bench.log(f"PostgreSQL {version}, hannoy {extversion} ({kernels} kernels), {cpu}, {os.cpu_count()} cores, "
              f"{memory / 2**30:.0f} GiB")


def load(bench):
    cur = bench.cur
    cur.execute("CREATE EXTENSION IF NOT EXISTS hannoy")
    database.create_items_table(cur)
    n = len(bench.vectors)
    started = time.perf_counter()
    database.copy_rows(cur, "items", np.arange(n), bench.labels, bench.vectors)
    copy_seconds = time.perf_counter() - started
    # Like the baseline: all-visible, frozen, with statistics, before any index exists.
    cur.execute("VACUUM (FREEZE, ANALYZE) items")
    cur.execute("SELECT pg_table_size('items')")
    table_bytes = cur.fetchone()[0]
    bench.results["load"] = {"rows": n, "seconds": copy_seconds, "table_bytes": table_bytes}
    bench.log(f"loaded {n:,} rows by binary COPY in {copy_seconds:.1f} s; table {table_bytes / 2**20:,.1f} MiB")


def ground_truth(bench):
    started = time.perf_counter()

    last_report = [started]

    def progress(done, total):
        if time.perf_counter() - last_report[0] > 15:
            last_report[0] = time.perf_counter()
            bench.log(f"  exact neighbours: {done:,} / {total:,} queries")

    bench.truth = truth.nearest(bench.vectors, bench.queries, depth=TRUTH_DEPTH, cache_dir=bench.cache_dir,
                                label=bench.dataset.name, progress=progress)
    seconds = time.perf_counter() - started
    bench.results["truth"] = {"queries": len(bench.queries), "depth": TRUTH_DEPTH, "seconds": seconds}
    bench.log(f"ground truth for {len(bench.queries):,} queries ready in {seconds:.1f} s "
              f"(cached in {os.path.relpath(bench.cache_dir)})")


class WorkerWatcher:
    """Follows the parallel workers a backend leads, polling pg_stat_activity from another
    connection: tells whether a build used the workers it was allowed, and samples each
    worker's memory (/proc/<pid>/status) while it runs."""

    def __init__(self, cluster, leader_pid, interval=0.05):
        self.cluster, self.leader_pid, self.interval = cluster, leader_pid, interval
        self.max_workers = 0
        self.peaks = {}  # worker pid -> {field: peak bytes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        conn = self.cluster.connect()
        cur = conn.cursor()
        while not self._stop.is_set():
            cur.execute("SELECT pid FROM pg_stat_activity WHERE leader_pid = %s AND pid <> %s",
                        (self.leader_pid, self.leader_pid))
            pids = [row[0] for row in cur.fetchall()]
            self.max_workers = max(self.max_workers, len(pids))
            for pid in pids:
                peaks = self.peaks.setdefault(pid, {})
                for name, value in database.process_memory(pid).items():
                    peaks[name] = max(peaks.get(name, 0), value)
            self._stop.wait(self.interval)
        conn.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def workers(self):
        """Peak memory of each worker seen, largest private memory first."""
        return sorted(({"peak_private_bytes": p.get("RssAnon"), "peak_shared_memory_bytes": p.get("RssShmem"),
                        "peak_mapped_file_bytes": p.get("RssFile")} for p in self.peaks.values()),
                      key=lambda w: -(w["peak_private_bytes"] or 0))


def build(bench):
    cur, plan = bench.cur, bench.plan
    results = []
    for memory, workers in plan.build_configs:
        runs = []
        for run in range(plan.build_runs):
            cur.execute(f"DROP INDEX IF EXISTS {INDEX}")
            cur.execute("CHECKPOINT")  # the previous build's writes are not charged to this one
            cur.execute("SET maintenance_work_mem = %s", (memory,))
            cur.execute("SET max_parallel_maintenance_workers = %s", (workers,))
            with database.MemorySampler(bench.pid) as sampler, WorkerWatcher(bench.cluster, bench.pid) as watcher:
                started = time.perf_counter()
                cur.execute(f"CREATE INDEX {INDEX} ON items USING hannoy (embedding real_l2_ops) "
                            "WITH (m = %s, ef_construction = %s)", (plan.m, plan.ef_construction))
                seconds = time.perf_counter() - started
            runs.append({"seconds": seconds, "workers_seen": watcher.max_workers, **sampler.result(),
                         "workers": watcher.workers()})
            worker_memory = "".join(f", worker {_mib(w['peak_private_bytes'])} private + "
                                    f"{_mib(w['peak_shared_memory_bytes'])} shared" for w in watcher.workers())
            bench.log(f"  build, maintenance_work_mem {memory}, {workers} parallel workers allowed: "
                      f"{seconds:.1f} s, leader peak {_mib(sampler.result()['peak_private_bytes'])} private + "
                      f"{_mib(sampler.result()['peak_shared_memory_bytes'])} shared{worker_memory}, "
                      f"{watcher.max_workers} workers seen")
        cur.execute("RESET maintenance_work_mem")
        cur.execute("RESET max_parallel_maintenance_workers")
        results.append({"maintenance_work_mem": memory, "max_parallel_maintenance_workers": workers,
                        "median_seconds": median([r["seconds"] for r in runs]),
                        "peak_private_bytes": max(r["peak_private_bytes"] or 0 for r in runs),
                        "peak_rss_bytes": max(r["peak_rss_bytes"] or 0 for r in runs) or None,
                        "peak_shared_memory_bytes": max(r["peak_shared_memory_bytes"] or 0 for r in runs) or None,
                        "worker_peak_private_bytes": max((w["peak_private_bytes"] or 0 for r in runs
                                                          for w in r["workers"]), default=None),
                        "worker_peak_shared_memory_bytes": max((w["peak_shared_memory_bytes"] or 0 for r in runs
                                                                for w in r["workers"]), default=None),
                        "workers_seen": max(r["workers_seen"] for r in runs), "runs": runs})
        bench.log(f"build with maintenance_work_mem {memory}, {workers} workers allowed: median "
                  f"{results[-1]['median_seconds']:.1f} s of {len(runs)}")
    bench.results["build"] = results


def _mib(n):
    return "?" if n is None else f"{n / 2**20:,.0f} MiB"


def mdb_stat(path):
    """Per named database of an LMDB file: pages and entries, from lmdb-utils' mdb_stat."""
    try:
        output = subprocess.run(["mdb_stat", "-e", "-a", "-n", path], check=True, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        return None, f"mdb_stat failed: {getattr(e, 'stderr', None) or e}".strip()
    databases, page_size, current = {}, None, None
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("Status of "):
            current = databases.setdefault(line[len("Status of "):], {})
        elif line.startswith("Page size:"):
            page_size = int(line.split(":")[1])
        elif current is not None and ":" in line:
            key, value = line.split(":", 1)
            if value.strip().isdigit():
                current[key.strip().lower().replace(" ", "_")] = int(value)
    for stats in databases.values():
        stats["bytes"] = page_size * sum(stats.get(k, 0) for k in ("branch_pages", "leaf_pages", "overflow_pages"))
    return {"page_size": page_size, "databases": databases}, None


def index_size(bench):
    cur = bench.cur
    cur.execute("SELECT file, file_bytes, items, dimensions, m, ef_construction, max_level "
                f"FROM hannoy_index_info('{INDEX}')")
    file, file_bytes, items, dims, m, ef_construction, max_level = cur.fetchone()
    started = time.perf_counter()
    cur.execute(f"SELECT ok, link_lists, links, unreachable FROM hannoy_verify('{INDEX}')")
    ok, link_lists, links, unreachable = cur.fetchone()
    verify_seconds = time.perf_counter() - started
    cur.execute("SELECT current_setting('data_directory')")
    stats, problem = mdb_stat(os.path.join(cur.fetchone()[0], file))
    size = {"file_bytes": file_bytes, "items": items, "bytes_per_vector": file_bytes / items,
            "raw_vector_bytes": 4 * dims, "ratio_to_raw": file_bytes / items / (4 * dims),
            "max_level": max_level, "links": links, "link_lists": link_lists,
            "links_per_vector": links / items, "verify_ok": ok, "unreachable": unreachable,
            "verify_seconds": verify_seconds, "lmdb": stats, "lmdb_problem": problem}
    if stats:
        per_db = {name: s["bytes"] for name, s in stats["databases"].items()}
        size["links_bytes"] = per_db.get("links")
        size["links_bytes_per_vector"] = per_db.get("links", 0) / items
        size["inlinks_bytes_per_vector"] = per_db.get("inlinks", 0) / items
        # The graph: its lists and their reverse (what VACUUM's repair reads).
        size["graph_bytes_per_vector"] = size["links_bytes_per_vector"] + size["inlinks_bytes_per_vector"]
        size["vectors_bytes_per_vector"] = per_db.get("vectors", 0) / items
        size["bookkeeping_bytes_per_vector"] = (per_db.get("items", 0) + per_db.get("tids", 0)) / items
    bench.results["size"] = size
    bench.log(f"index file {file_bytes / 2**20:,.1f} MiB = {size['bytes_per_vector']:,.0f} B/vector "
              f"({size['ratio_to_raw']:.3f} x raw); links {size.get('links_bytes_per_vector', float('nan')):,.0f} "
              f"+ in-links {size.get('inlinks_bytes_per_vector', float('nan')):,.0f} "
              f"B/vector ({links / items:.1f} links/vector); verify ok={ok}, {unreachable} unreachable")


def search(bench):
    # Queries run on a backend of their own, as an application's would. The backend that built
    # the index is no model: the build's large allocations have raised glibc's mmap threshold
    # there, so per-query allocations that a fresh backend gets from mmap (and page-faults in)
    # come from the heap instead.
    bench.close()
    cur = bench.connect()
    bench.prepare_knn()
    statements = bench.statements("EXECUTE knn(%s)")
    plan_lines = require_index_scan(cur, statements[0])
    rows = ef_sweep(bench, cur, statements, "hannoy.ef_search", "")
    bench.results["search"] = {"queries": len(statements), "plan": plan_lines, "sweep": rows}


def concurrent(bench):
    plan = bench.plan
    statements = bench.statements("EXECUTE knn(%s)")
    kth = bench.truth.kth_distance()
    rows = []
    for count in plan.clients:
        passes = {ef: [] for ef in plan.concurrent_ef}
        for _ in range(plan.runs):  # interleaved, as in search()
            for ef in plan.concurrent_ef:
                passes[ef].append(clients.run_concurrent(bench.cluster, bench.knn_session(ef), statements, count))
        for ef in plan.concurrent_ef:
            rows.append({"ef_search": ef, "clients": count, "recall": bench.recall(passes[ef][0].found, kth),
                         **timing_summary(passes[ef])})
            bench.log(f"  {count} clients, ef_search {ef:>4}: {rows[-1]['qps']:,.0f} queries/s, "
                      f"p50 {rows[-1]['p50_ms']:.2f} ms, p99 {rows[-1]['p99_ms']:.2f} ms")
    bench.results["concurrent"] = rows


def exact(bench):
    cur = bench.cur
    count = min(bench.plan.exact_queries, len(bench.queries))
    cur.execute("SET enable_indexscan = off")
    cur.execute(f"PREPARE knn_exact(real[]) AS {KNN_SQL}")
    statements = bench.statements("EXECUTE knn_exact(%s)", rows=range(count))
    plan_lines = explain(cur, statements[0])
    if any("Index" in line for line in plan_lines):
        raise BenchError("exact search unexpectedly uses an index:\n  " + "\n  ".join(plan_lines))
    one = clients.run_pass(cur, statements)
    cur.execute("RESET enable_indexscan")
    bench.results["exact"] = {"queries": count, "plan": plan_lines,
                              "recall": bench.recall(one.found, bench.truth.kth_distance()[:count],
                                                     rows=np.arange(count)),
                              **timing_summary([one])}
    bench.log(f"exact search (sequential scan): p50 {bench.results['exact']['p50_ms']:.1f} ms, "
              f"{bench.results['exact']['qps']:.1f} queries/s over {count} queries")


PGVECTOR_TABLE = "items_pgvector"
PGVECTOR_INDEX = "items_pgvector_embedding_idx"


def pgvector(bench):
    """pgvector measured side by side when the server has it: the same rows in a table of its
    own (vector column, plain storage), its HNSW index built with the same m, ef_construction
    and build settings, and the same queries sent by the same client as the same real[]
    literals (cast to vector by the prepared statement). Without it, the report compares with
    the recorded figures in bench/baselines/."""
    cur, plan = bench.cur, bench.plan
    cur.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
    row = cur.fetchone()
    if row is None:
        bench.results["pgvector"] = {"available": False}
        bench.log("pgvector is not installed on this server: comparing with its recorded figures")
        return
    cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
    cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    version = cur.fetchone()[0]
    dims = bench.vectors.shape[1]
    cur.execute(f"DROP TABLE IF EXISTS {PGVECTOR_TABLE}")
    cur.execute(f"CREATE TABLE {PGVECTOR_TABLE} (id int, label int, embedding vector({dims}))")
    cur.execute(f"ALTER TABLE {PGVECTOR_TABLE} ALTER COLUMN embedding SET STORAGE PLAIN")
    # The rows the client knows to be live, which after the earlier measures are all of them.
    cur.execute(f"INSERT INTO {PGVECTOR_TABLE} SELECT id, label, embedding::vector FROM items ORDER BY id")
    cur.execute(f"VACUUM (FREEZE, ANALYZE) {PGVECTOR_TABLE}")
    bench.log(f"pgvector {version}: {PGVECTOR_TABLE} loaded")

    builds = []
    for memory, workers in plan.build_configs:
        seconds = []
        for run in range(plan.build_runs):
            cur.execute(f"DROP INDEX IF EXISTS {PGVECTOR_INDEX}")
            cur.execute("CHECKPOINT")
            cur.execute("SET maintenance_work_mem = %s", (memory,))
            cur.execute("SET max_parallel_maintenance_workers = %s", (workers,))
            started = time.perf_counter()
            cur.execute(f"CREATE INDEX {PGVECTOR_INDEX} ON {PGVECTOR_TABLE} USING hnsw (embedding vector_l2_ops) "
                        "WITH (m = %s, ef_construction = %s)", (plan.m, plan.ef_construction))
            seconds.append(time.perf_counter() - started)
        cur.execute("RESET maintenance_work_mem")
        cur.execute("RESET max_parallel_maintenance_workers")
        builds.append({"maintenance_work_mem": memory, "max_parallel_maintenance_workers": workers,
                       "median_seconds": median(seconds), "runs": seconds})
        bench.log(f"  pgvector build, maintenance_work_mem {memory}, {workers} workers allowed: "
                  f"median {builds[-1]['median_seconds']:.1f} s of {len(seconds)}")
    cur.execute("SELECT pg_relation_size(%s)", (PGVECTOR_INDEX,))
    index_bytes = cur.fetchone()[0]
    size = {"bytes": index_bytes, "bytes_per_vector": round(index_bytes / len(bench.vectors))}

    # A backend of its own, as for hannoy's sweep.
    bench.close()
    cur = bench.connect()
    cur.execute("SET plan_cache_mode = force_generic_plan")
    cur.execute(f"PREPARE knn_pgvector(real[]) AS SELECT id FROM {PGVECTOR_TABLE} "
                "ORDER BY embedding <-> $1::vector LIMIT 10")
    statements = bench.statements("EXECUTE knn_pgvector(%s)")
    plan_lines = require_index_scan(cur, statements[0], PGVECTOR_INDEX)
    # hannoy's passes again, interleaved with pgvector's: the search measure ran minutes ago,
    # maybe on a faster or slower machine; the ratio is taken from these.
    hannoy_conn = bench.cluster.connect()
    try:
        hannoy_cur = hannoy_conn.cursor()
        for sql in bench.knn_session():
            hannoy_cur.execute(sql)
        hannoy_statements = bench.statements("EXECUTE knn(%s)")
        hannoy_sweep, sweep = ef_sweeps(bench, [(hannoy_cur, hannoy_statements, "hannoy.ef_search", "hannoy "),
                                                (cur, statements, "hnsw.ef_search", "pgvector ")])
    finally:
        hannoy_conn.close()
    # Later measures (cold start, updates) see the cluster as it was.
    cur.execute(f"DROP TABLE {PGVECTOR_TABLE}")
    bench.close()
    bench.connect()
    bench.results["pgvector"] = {"available": True, "version": version, "plan": plan_lines, "build": builds,
                                 "size": size, "search": sweep, "hannoy_search": hannoy_sweep}


def filtered(bench):
    cur, plan = bench.cur, bench.plan
    count = min(plan.filtered_queries, len(bench.queries))
    rows_used = np.arange(count)
    queries = bench.queries[rows_used]
    cur.execute("SET plan_cache_mode = force_generic_plan")
    cur.execute(f"PREPARE knn_filtered(real[], int) AS {FILTERED_SQL}")
    cur.execute(f"PREPARE knn_filtered_exact(real[], int) AS {FILTERED_SQL}")
    results = []
    for mode, wanted in (("query's own class", bench.query_labels[rows_used]),
                         ("another class ((class+5) mod 10)",
                          (bench.query_labels[rows_used] + 5) % bench.dataset.label_count)):
        wanted = np.asarray(wanted, dtype=np.int64)
        # Deleted rows get no label, so no filter picks them.
        expected = truth.filtered_nearest(bench.vectors, np.where(bench.live, bench.labels, -1), queries, wanted,
                                          cache_dir=bench.cache_dir, label=f"{bench.dataset.name}-filtered")
        wanted_list = wanted.tolist()
        statements = bench.statements("EXECUTE knn_filtered(%s, %s)", wanted_list, rows=rows_used)
        plan_lines = require_index_scan(cur, statements[0])
        for ef in plan.filtered_ef:
            cur.execute("SET hannoy.ef_search = %s", (ef,))
            clients.run_pass(cur, statements[: max(1, count // 10)])  # warm-up
            passes = repeated_passes(cur, statements, plan.runs)
            row = {"filter": mode, "runs": len(passes), "ef_search": ef, "queries": count,
                   "recall": bench.recall(passes[0].found, expected.kth_distance(), rows=rows_used),
                   "rows_returned": float(np.mean([len(f) for f in passes[0].found])), **timing_summary(passes)}
            results.append(row)
            bench.log(f"  filtered, {mode}, ef_search {ef}: recall {row['recall']:.4f}, "
                      f"{row['rows_returned']:.1f} rows, {row['qps']:,.0f} queries/s, p50 {row['p50_ms']:.2f} ms")
        # The sequential scan any filtered index scan has to beat.
        cur.execute("SET enable_indexscan = off")
        exact_pass = clients.run_pass(cur, [s.replace(b"knn_filtered(", b"knn_filtered_exact(")
                                            for s in statements[:min(20, count)]])
        cur.execute("RESET enable_indexscan")
        results.append({"filter": mode, "ef_search": None, "queries": len(exact_pass.found), "exact": True,
                        "recall": bench.recall(exact_pass.found, expected.kth_distance()[:len(exact_pass.found)],
                                               rows=rows_used[:len(exact_pass.found)]),
                        "rows_returned": float(np.mean([len(f) for f in exact_pass.found])),
                        **timing_summary([exact_pass])})
        bench.log(f"  filtered, {mode}, exact (sequential scan): p50 {results[-1]['p50_ms']:.1f} ms")
    cur.execute("RESET hannoy.ef_search")
    bench.results["filtered"] = {"plan": plan_lines, "rows": results}


def _process_io(pid):
    """(bytes the process read from storage, major page faults) so far."""
    read_bytes = None
    try:
        with open(f"/proc/{pid}/io") as f:
            read_bytes = int(dict(line.split(": ") for line in f.read().splitlines())["read_bytes"])
    except (OSError, KeyError, ValueError):
        pass
    with open(f"/proc/{pid}/stat") as f:
        major_faults = int(f.read().rsplit(")", 1)[1].split()[9])
    return read_bytes, major_faults


def _read_whole_file(path):
    """Reads a file sequentially into the page cache; returns the seconds it took."""
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 22):
            pass
    return time.perf_counter() - started


def _first_queries(bench, drop_cache, preread=None):
    """Restarts the server (emptying the page cache first when asked) and times a new
    connection's first queries. With `preread`, reads that file before connecting: what
    prefetching the whole index file would cost and buy."""
    bench.close()
    bench.cluster.stop()
    problem = database.drop_page_cache() if drop_cache else None
    bench.cluster.start()
    preread_seconds = _read_whole_file(preread) if preread else None
    literals = bench.literals()
    started = time.perf_counter()
    cur = bench.connect()
    connected = time.perf_counter()
    io_before = _process_io(bench.pid)
    timings = []
    for literal in literals[:12]:
        started_query = time.perf_counter()
        cur.execute(KNN_SQL.replace("$1", "%s"), (literal,))
        cur.fetchall()
        timings.append(time.perf_counter() - started_query)
        if len(timings) == 1:
            io_first = _process_io(bench.pid)
    return {"connect_ms": (connected - started) * 1e3, "first_query_ms": timings[0] * 1e3,
            "second_query_ms": timings[1] * 1e3, "later_queries_median_ms": median(timings[2:]) * 1e3,
            "first_query_read_bytes": None if io_before[0] is None else io_first[0] - io_before[0],
            "first_query_major_faults": io_first[1] - io_before[1], "preread_seconds": preread_seconds,
            "page_cache_dropped": drop_cache and problem is None, "problem": problem}


def cold_start(bench):
    cur = bench.cur
    cur.execute("SELECT current_setting('hannoy.prefetch_memory', true)")
    prefetch = cur.fetchone()[0]
    cur.execute(f"SELECT current_setting('data_directory'), file, file_bytes FROM hannoy_index_info('{INDEX}')")
    data_directory, file, file_bytes = cur.fetchone()
    runs = [_first_queries(bench, drop_cache=True) for _ in range(bench.plan.cold_runs)]
    for r in runs:
        bench.log(f"  cold start: connect {r['connect_ms']:.1f} ms, first query {r['first_query_ms']:.1f} ms "
                  f"({(r['first_query_read_bytes'] or 0) / 2**20:.1f} MiB read, {r['first_query_major_faults']} "
                  f"major faults), second {r['second_query_ms']:.1f} ms, then {r['later_queries_median_ms']:.1f} ms"
                  + (f"; {r['problem']}" if r["problem"] else ""))
    warm = _first_queries(bench, drop_cache=False)
    bench.log(f"  restart keeping the page cache: first query {warm['first_query_ms']:.1f} ms")
    preread = None
    try:
        preread = _first_queries(bench, drop_cache=True, preread=os.path.join(data_directory, file))
        bench.log(f"  cold start reading the whole index file first: {preread['preread_seconds']:.2f} s to read "
                  f"{file_bytes / 2**20:,.0f} MiB, then first query {preread['first_query_ms']:.1f} ms")
    except OSError as e:
        bench.log(f"  cannot read the index file to emulate a whole-file prefetch: {e.strerror}")
    # hannoy.prefetch_memory: the upper layers only (a budget below the file's size), and the
    # whole file (a budget above it), both in the server's configuration for the new backend.
    prefetched = {}
    if prefetch is not None:
        for label, budget in (("upper_layers", "16MB"), ("whole_file", f"{file_bytes // 2**20 + 64}MB")):
            cur = bench.cur
            cur.execute("ALTER SYSTEM SET hannoy.prefetch_memory = %s", (budget,))
            variant = [_first_queries(bench, drop_cache=True) for _ in range(bench.plan.cold_runs)]
            bench.cur.execute("ALTER SYSTEM RESET hannoy.prefetch_memory")
            bench.cur.execute("SELECT pg_reload_conf()")
            prefetched[label] = {"setting": budget, "runs": variant,
                                 **{key: median([r[key] for r in variant]) for key in
                                    ("connect_ms", "first_query_ms", "second_query_ms", "later_queries_median_ms")}}
            bench.log(f"  cold start with hannoy.prefetch_memory = {budget}: first query "
                      f"{prefetched[label]['first_query_ms']:.1f} ms, second {prefetched[label]['second_query_ms']:.1f}"
                      f" ms, then {prefetched[label]['later_queries_median_ms']:.1f} ms (medians)")
    summary = {key: median([r[key] for r in runs]) for key in
               ("connect_ms", "first_query_ms", "second_query_ms", "later_queries_median_ms")}
    bench.results["cold_start"] = {
        **summary, "runs": runs, "warm_restart": warm, "whole_file_preread": preread, "index_file_bytes": file_bytes,
        "prefetch": prefetched,
        "page_cache_dropped": all(r["page_cache_dropped"] for r in runs),
        "prefetch_memory_setting": prefetch if prefetch is not None else "not available in this version"}
    bench.log(f"cold start (median of {len(runs)}): first query {summary['first_query_ms']:.1f} ms after connecting "
              f"in {summary['connect_ms']:.1f} ms")
    # Back to a warm page cache for whatever comes next: the index file (read just above when
    # permitted) and the table, which a sequential scan reads through the page cache.
    bench.cur.execute("SELECT count(*) FROM items")
    bench.prepare_knn()


def _limited_pass(bench, cur, statements):
    """One timed pass of the backend, with what it read from storage and its peak memory."""
    io_before = _process_io(bench.pid)
    with database.MemorySampler(bench.pid, interval=0.1) as sampler:
        timed = clients.run_pass(cur, statements)
    io_after = _process_io(bench.pid)
    count = len(statements)
    return timed, {"read_kib_per_query": None if io_before[0] is None else (io_after[0] - io_before[0]) / count / 1024,
                   "major_faults_per_query": (io_after[1] - io_before[1]) / count,
                   "backend_peak_private_bytes": sampler.result()["peak_private_bytes"]}


def _can_connect(bench):
    try:
        bench.cluster.connect().close()
        return True
    except BenchError:
        return False


def small_memory(bench):
    """The sweep's queries by a backend whose memory, page cache included, is limited below
    the index file's size: how an index larger than RAM answers. The server restarts with
    small shared buffers and the page cache dropped; its postmaster (so every backend forked
    afterwards) is moved into a memory cgroup, the limit set to a fraction of the file's size
    (at least SMALL_MEMORY_FLOOR); after a warm-up pass (the cache filled as far as the limit
    lets it), each ef_search is timed once. Autovacuum is off meanwhile; both settings are
    restored afterwards."""
    cur, plan = bench.cur, bench.plan
    cur.execute(f"SELECT current_setting('data_directory'), file_bytes FROM hannoy_index_info('{INDEX}')")
    data_directory, file_bytes = cur.fetchone()
    if file_bytes <= SMALL_MEMORY_FLOOR:
        problem = (f"the index file ({file_bytes / 1e6:,.1f} MB) is no larger than the least memory the backend "
                   f"runs in ({SMALL_MEMORY_FLOOR / 1e6:,.1f} MB); a larger data set (--dataset synthetic) shows "
                   "searches with less memory than the index.")
        bench.results["small_memory"] = {"problem": problem, "index_file_bytes": file_bytes}
        bench.log(f"  skipped: {problem}")
        return
    cgroup, problem = database.MemoryCgroup.create()
    if cgroup is None:
        bench.results["small_memory"] = {"problem": problem}
        bench.log(f"  skipped: {problem}")
        return
    count = min(plan.small_memory_queries, len(bench.queries))
    rows_used = np.arange(count)
    kth = bench.truth.kth_distance()[:count]
    results, problem = [], None
    cur.execute("SELECT current_setting('shared_buffers'), current_setting('autovacuum')")
    shared_buffers, autovacuum = cur.fetchone()
    try:
        cur.execute("ALTER SYSTEM SET shared_buffers = %s", (SMALL_MEMORY_SHARED_BUFFERS,))
        # An autovacuum worker forked into the cgroup (an ANALYZE detoasts thousands of rows)
        # would compete with the backend for the limit; the table does not change meanwhile.
        cur.execute("ALTER SYSTEM SET autovacuum = off")
        for fraction in plan.small_memory_fractions:
            limit = max(int(file_bytes * fraction), SMALL_MEMORY_FLOOR)
            bench.close()
            bench.cluster.stop()
            dropped = database.drop_page_cache()
            bench.cluster.start()
            cgroup.set_limit(limit)
            cgroup.add(database.postmaster_pid(data_directory))
            cur = bench.connect()
            if not cgroup.contains(bench.pid):
                raise BenchError("the backend did not start in the memory cgroup")
            bench.prepare_knn()
            statements = bench.statements("EXECUTE knn(%s)", rows=rows_used)
            cur.execute("SET hannoy.ef_search = %s", (plan.small_memory_ef[0],))
            warm_up, warm_io = _limited_pass(bench, cur, statements)
            bench.log(f"  memory limit {limit / 2**20:,.0f} MiB, warm-up: {warm_up.qps:,.0f} queries/s, "
                      f"{warm_io['read_kib_per_query'] or 0:,.0f} KiB read per query, backend peak "
                      f"{(warm_io['backend_peak_private_bytes'] or 0) / 2**20:,.0f} MiB private")
            for ef in plan.small_memory_ef:
                cur.execute("SET hannoy.ef_search = %s", (ef,))
                timed, io = _limited_pass(bench, cur, statements)
                row = {"limit_bytes": limit, "fraction": limit / file_bytes, "ef_search": ef, "queries": count,
                       "recall": bench.recall(timed.found, kth, rows=rows_used), **timing_summary([timed]), **io,
                       "warm_up_qps": warm_up.qps, "warm_up_read_kib_per_query": warm_io["read_kib_per_query"],
                       "page_cache_dropped": dropped is None}
                results.append(row)
                bench.log(f"  memory limit {limit / 2**20:,.0f} MiB ({row['fraction']:.2f} x the index file), "
                          f"ef_search {ef}: recall {row['recall']:.4f}, {row['qps']:,.0f} queries/s, p50 "
                          f"{row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                          f"{row['read_kib_per_query'] or 0:,.0f} KiB read per query")
            # The cgroup's peak so far: the limits rise from one fraction to the next.
            peak = cgroup.peak_bytes()
            for row in results[-len(plan.small_memory_ef):]:
                row["cgroup_peak_bytes"] = peak
    except psycopg2.OperationalError as e:
        kills = cgroup.oom_kills()
        problem = f"the backend was lost ({str(e).strip()})" + (f"; {kills} OOM kills in the cgroup" if kills else "")
        bench.log(f"  {problem}")
    finally:
        bench.close()
        # After an OOM kill the server reinitializes: wait until it takes connections again.
        if not database.wait_for(lambda: _can_connect(bench), timeout=60):
            raise BenchError("the server did not come back after the memory-limited searches")
        cur = bench.connect()
        cur.execute("ALTER SYSTEM SET shared_buffers = %s", (shared_buffers,))
        cur.execute("ALTER SYSTEM SET autovacuum = %s", (autovacuum,))
        bench.close()
        bench.cluster.stop()
        cgroup.remove()
        bench.cluster.start()
        bench.connect()
    bench.results["small_memory"] = {"index_file_bytes": file_bytes, "rows": results, "problem": problem,
                                     "shared_buffers": SMALL_MEMORY_SHARED_BUFFERS, "cgroup_version": cgroup.version}
    # Back to a warm page cache for whatever comes next, as after the cold starts.
    bench.cur.execute("SELECT count(*) FROM items")
    bench.prepare_knn()


def _recall_now(bench, label):
    """Recall at UPDATE_EF of the current table against the current ground truth."""
    cur = bench.cur
    bench.prepare_knn()
    cur.execute("SET hannoy.ef_search = %s", (UPDATE_EF,))
    one = clients.run_pass(cur, bench.statements("EXECUTE knn(%s)"))
    value = bench.recall(one.found, bench.truth.kth_distance())
    bench.log(f"  recall at ef_search {UPDATE_EF} {label}: {value:.4f} ({one.qps:,.0f} queries/s)")
    return value


def _add_rows(bench, count, stream):
    vectors, labels = bench.dataset.extra_rows(count, stream)
    ids = np.arange(len(bench.vectors), len(bench.vectors) + count)
    bench.grow_table(ids, labels, vectors)
    added = truth.nearest(vectors, bench.queries, depth=TRUTH_DEPTH, row_ids=ids, cache_dir=bench.cache_dir,
                          label=f"{bench.dataset.name}-extra{stream}")
    bench.truth = truth.merged(bench.truth, added)
    return ids, labels, vectors


def _insert_one_by_one(bench, count, stream, one_transaction):
    conn, cur = bench.conn, bench.cur
    ids, labels, vectors = _add_rows(bench, count, stream)
    statements = [cur.mogrify("EXECUTE insert_row(%s, %s, %s)", (int(i), int(l), database.vector_literal(v)))
                  for i, l, v in zip(ids, labels, vectors)]
    cur.execute("PREPARE insert_row(int, int, real[]) AS INSERT INTO items (id, label, embedding) "
                "VALUES ($1, $2, $3)")
    latencies = np.empty(count)
    started = time.perf_counter()
    if one_transaction:
        conn.autocommit = False
    for n, statement in enumerate(statements):
        t = time.perf_counter()
        cur.execute(statement)
        latencies[n] = time.perf_counter() - t
    if one_transaction:
        conn.commit()
        conn.autocommit = True
    seconds = time.perf_counter() - started
    cur.execute("DEALLOCATE insert_row")
    return {"rows": count, "seconds": seconds, "rows_per_second": count / seconds,
            "p50_ms": float(np.percentile(latencies, 50) * 1e3), "p99_ms": float(np.percentile(latencies, 99) * 1e3)}


def _vacuum(bench):
    """Times VACUUM of the table; returns (seconds, None) or (None, what went wrong)."""
    cur = bench.cur
    cur.execute("SET statement_timeout = %s", (VACUUM_TIMEOUT_SECONDS * 1000,))
    started = time.perf_counter()
    try:
        cur.execute("VACUUM items")
        return time.perf_counter() - started, None
    except psycopg2.errors.QueryCanceled:
        return None, f"VACUUM did not finish in {VACUUM_TIMEOUT_SECONDS} s and was cancelled"
    finally:
        cur.execute("RESET statement_timeout")


def updates(bench):
    cur, plan = bench.cur, bench.plan
    result = {"ef_search": UPDATE_EF}
    result["insert_one_transaction"] = _insert_one_by_one(bench, plan.inserts, 1, one_transaction=True)
    bench.log(f"  {plan.inserts:,} INSERTs in one transaction: "
              f"{result['insert_one_transaction']['rows_per_second']:,.0f} rows/s")
    result["insert_autocommit"] = _insert_one_by_one(bench, plan.inserts, 2, one_transaction=False)
    bench.log(f"  {plan.inserts:,} INSERTs in autocommit: {result['insert_autocommit']['rows_per_second']:,.0f} "
              f"rows/s, p50 {result['insert_autocommit']['p50_ms']:.2f} ms")
    result["recall_after_inserts"] = _recall_now(bench, f"after the inserts ({len(bench.vectors):,} rows)")

    rng = np.random.default_rng(7)
    live_ids = np.flatnonzero(bench.live)
    deleted = np.sort(rng.choice(live_ids, int(len(live_ids) * plan.delete_fraction), replace=False))
    started = time.perf_counter()
    cur.execute("DELETE FROM items WHERE id = ANY(%s)", (deleted.tolist(),))
    delete_seconds = time.perf_counter() - started
    bench.live[deleted] = False
    bench.truth = truth.without(bench.truth, deleted)
    vacuum_seconds, vacuum_problem = _vacuum(bench)
    if vacuum_problem:
        # A VACUUM that overran its time limit (earlier builds could hang when the index held a
        # multiple of 10,000 heap TIDs): one more row changes the count, and the VACUUM that
        # follows measures the rest of the work.
        bench.log(f"  {vacuum_problem}; one more INSERT, then VACUUM again")
        ids, labels, vectors = _add_rows(bench, 1, 4)
        cur.execute("INSERT INTO items (id, label, embedding) VALUES (%s, %s, %s)",
                    (int(ids[0]), int(labels[0]), database.vector_literal(vectors[0])))
        vacuum_seconds, second_problem = _vacuum(bench)
        if second_problem:
            raise BenchError(f"VACUUM failed twice: {second_problem}")
    cur.execute(f"SELECT items, deleted_items FROM hannoy_index_info('{INDEX}')")
    live_items, deleted_items = cur.fetchone()
    result["delete"] = {"rows": len(deleted), "of_rows": len(live_ids), "fraction": plan.delete_fraction,
                        "delete_seconds": delete_seconds, "vacuum_problem": vacuum_problem,
                        "vacuum_seconds": vacuum_seconds, "index_items_after": live_items,
                        "index_deleted_items_after": deleted_items}
    bench.log(f"  DELETE of {len(deleted):,} of {len(live_ids):,} rows {delete_seconds:.1f} s, then VACUUM "
              f"{vacuum_seconds:.1f} s")
    result["recall_after_vacuum"] = _recall_now(bench, "after DELETE + VACUUM")

    ids, labels, vectors = _add_rows(bench, plan.copy_rows, 3)
    started = time.perf_counter()
    database.copy_rows(cur, "items", ids, labels, vectors)
    seconds = time.perf_counter() - started
    result["copy"] = {"rows": len(ids), "seconds": seconds, "rows_per_second": len(ids) / seconds}
    bench.log(f"  COPY of {len(ids):,} rows into the indexed table: {len(ids) / seconds:,.0f} rows/s")
    result["recall_after_copy"] = _recall_now(bench, "after the COPY")
    # Structure (without reachability) and reachability apart: inserts may leave items that no
    # search reaches until the next VACUUM relinks them, which is by design, not damage.
    cur.execute(f"SELECT ok FROM hannoy_verify('{INDEX}', false)")
    structure_ok = cur.fetchone()[0]
    cur.execute(f"SELECT unreachable FROM hannoy_verify('{INDEX}')")
    result["verify_after"] = {"structure_ok": structure_ok, "unreachable": cur.fetchone()[0]}
    cur.execute(f"SELECT file_bytes, items, deleted_items FROM hannoy_index_info('{INDEX}')")
    file_bytes, items, deleted_items = cur.fetchone()
    result["size_after"] = {"file_bytes": file_bytes, "items": items, "deleted_items": deleted_items,
                            "bytes_per_live_vector": file_bytes / items}
    bench.log(f"  afterwards: index file {file_bytes / 2**20:,.1f} MiB for {items:,} live items "
              f"({file_bytes / items:,.0f} B each, {deleted_items:,} deleted kept); structure ok={structure_ok}, "
              f"{result['verify_after']['unreachable']} items unreachable until the next VACUUM")
    result["copy_vs_rebuild"] = _copy_vs_rebuild(bench, ids, labels, vectors, seconds)
    cur.execute("RESET hannoy.ef_search")
    bench.results["updates"] = result


def _copy_vs_rebuild(bench, ids, labels, vectors, copy_seconds):
    """The COPY just timed against its alternative: the same rows deleted again (and vacuumed),
    then DROP INDEX, COPY, CREATE INDEX. Both end with the same table and an index on it."""
    cur, plan = bench.cur, bench.plan
    cur.execute("DELETE FROM items WHERE id >= %s", (int(ids[0]),))
    vacuum_seconds, problem = _vacuum(bench)
    if problem:
        raise BenchError(f"VACUUM before the rebuild comparison: {problem}")
    cur.execute("CHECKPOINT")
    started = time.perf_counter()
    cur.execute(f"DROP INDEX {INDEX}")
    database.copy_rows(cur, "items", ids, labels, vectors)
    copied = time.perf_counter()
    cur.execute(f"CREATE INDEX {INDEX} ON items USING hannoy (embedding real_l2_ops) "
                "WITH (m = %s, ef_construction = %s)", (plan.m, plan.ef_construction))
    rebuild_seconds = time.perf_counter() - started
    cur.execute("SELECT count(*) FROM items")
    rows = cur.fetchone()[0]
    result = {"rows": len(ids), "table_rows": rows, "copy_into_index_seconds": copy_seconds,
              "drop_copy_rebuild_seconds": rebuild_seconds, "copy_part_seconds": copied - started,
              "ratio": copy_seconds / rebuild_seconds}
    bench.log(f"  COPY of {len(ids):,} rows into the indexed table {copy_seconds:.1f} s; DROP INDEX + COPY + "
              f"CREATE INDEX ({rows:,} rows) {rebuild_seconds:.1f} s: ratio {result['ratio']:.2f}")
    result["recall_after_rebuild"] = _recall_now(bench, "after the rebuild")
    return result


def profile(bench):
    from . import profiling
    bench.results["profile"] = profiling.profile_queries(bench)


# Order matters: later measures rely on earlier ones (the index, the truth, the table).
MEASURES = [
    ("environment", environment, "server, machine and settings"),
    ("load", load, "the table, by binary COPY"),
    ("truth", ground_truth, "exact neighbours with numpy (cached)"),
    ("build", build, "CREATE INDEX, serial and with workers allowed"),
    ("size", index_size, "index file, links, verification"),
    ("search", search, "ef_search sweep, one client"),
    ("concurrent", concurrent, "ef_search sweep, several clients"),
    ("exact", exact, "exact search by sequential scan"),
    ("pgvector", pgvector, "pgvector side by side, when the server has it"),
    ("filtered", filtered, "WHERE label = ... ORDER BY distance"),
    ("profile", profile, "where a query's time goes (perf)"),
    ("cold_start", cold_start, "first query after a restart with the page cache dropped"),
    ("small_memory", small_memory, "searches with less memory than the index file (memory cgroup)"),
    ("updates", updates, "INSERT, DELETE + VACUUM, COPY"),
]
REQUIRED = {"environment", "load", "truth", "build"}
