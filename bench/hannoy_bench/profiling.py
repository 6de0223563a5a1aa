"""Where a query's time goes: perf samples of a backend running the k-NN loop.

perf records the benchmark's own backend (software cpu-clock events, which work in virtual
machines without hardware counters; DWARF call graphs, since neither PostgreSQL nor LMDB keeps
frame pointers) while the client runs the sweep's queries at ef_search 40. Each sample is
charged to one category: the first frame, walking from the leaf towards main, that a rule
below recognises. So a page fault under mdb_get counts as an LMDB lookup, and l2_squared
counts as a distance kernel wherever it is called from. The backend's CPU time per query
(from /proc) turns the shares into microseconds.
"""

import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter

from . import clients, database

PROFILE_EF = 40

# (category, pattern on the symbol, pattern on the library), tried in this order on each frame.
CATEGORIES = [
    ("distance kernels", r"hannoy::simd::|l2_squared|inner_product|hamming", None),
    ("visited-set clearing (per query)", r"VisitedSet::reset|_M_fill_insert", None),
    ("roaring link decoding", r"decode_portable|walk_portable|Bitmap::decode|roaring", None),
    ("LMDB lookups", r"^mdb_|lmdb::", r"liblmdb"),
    ("graph search bookkeeping (heaps, marks)",
     r"search_layer|descend|greedy_closest|push_heap|pop_heap|adjust_heap|ScanSearch|closer|VisitedSet", None),
    ("query vector set-up and checks", r"first_non_finite|float_vector_from_datum|preprocess_floats|start_scan",
     None),
    ("other hannoy code", None, r"hannoy\.so"),
    ("heap fetch and visibility",
     r"heapam_index_fetch|heap_hot_search|heap_page_prune|index_fetch_heap|ReadBuffer|HeapTupleSatisfies|"
     r"heap_getnext|heapgettup", None),
    ("parsing the real[] literal", r"array_in|float4in|strtof|str_to_mpn|round_and_return|ReadArrayStr", None),
    ("client protocol and socket I/O",
     r"__send|__libc_recv|__recv|secure_read|secure_write|pq_recvbuf|pq_flush|pq_getbyte|epoll_wait|"
     r"WaitEventSetWait|internal_flush", None),
    ("other PostgreSQL (parser, planner, executor)", None, r"postgres"),
]
COMPILED = [(name, re.compile(sym) if sym else None, re.compile(dso) if dso else None)
            for name, sym, dso in CATEGORIES]
OTHER = "other (libc, kernel, unresolved)"


def hardware_counters_work():
    try:
        out = subprocess.run(["perf", "stat", "-e", "instructions", "true"], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "not supported" not in out and "<not counted>" not in out


def categorise(stack):
    """The category of one sample; stack holds (symbol, library) from the leaf up."""
    for symbol, library in stack:
        if "kernel.kallsyms" in library:
            continue  # system time is charged to the user code that caused it
        for name, symbol_rule, library_rule in COMPILED:
            if (symbol_rule and symbol_rule.search(symbol)) or (library_rule and library_rule.search(library)):
                return name
    return OTHER


def parse_perf_script(text):
    """Yields each sample's stack as a list of (symbol, library), leaf first."""
    frame = re.compile(r"^\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")
    stack = []
    for line in text.splitlines():
        if not line.strip():
            if stack:
                yield stack
            stack = []
            continue
        match = frame.match(line)
        if match:
            symbol = re.sub(r"\+0x[0-9a-f]+$", "", match.group(1))
            stack.append((symbol, match.group(2)))
    if stack:
        yield stack


def profile_queries(bench):
    if shutil.which("perf") is None:
        return {"problem": "perf is not installed (Debian package linux-perf)"}
    cur = bench.cur
    bench.prepare_knn()
    cur.execute("SET hannoy.ef_search = %s", (PROFILE_EF,))
    statements = bench.statements("EXECUTE knn(%s)")
    clients.run_pass(cur, statements[:500])  # warm
    # Sampling with call graphs slows the backend down: the time per query comes from a pass
    # without perf, the shares from the pass with it.
    cpu_before = database.backend_cpu_seconds(bench.pid)
    plain = clients.run_pass(cur, statements[:2000])
    backend_us = (database.backend_cpu_seconds(bench.pid) - cpu_before) / len(plain.latencies) * 1e6
    latency_us = plain.latencies.mean() * 1e6
    data = os.path.join(bench.cache_dir, "perf.data")
    os.makedirs(bench.cache_dir, exist_ok=True)
    recorder = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "499", "--call-graph", "dwarf,16384",
                                 "-p", str(bench.pid), "-o", data], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # perf attaches
    if recorder.poll() is not None:
        return {"problem": f"perf record failed: {recorder.stderr.read().strip()}"}
    cpu_before = database.backend_cpu_seconds(bench.pid)
    started = time.perf_counter()
    done = 0
    while time.perf_counter() - started < bench.plan.profile_seconds:
        one = clients.run_pass(cur, statements[:1000])
        done += len(one.latencies)
    wall = time.perf_counter() - started
    cpu = database.backend_cpu_seconds(bench.pid) - cpu_before
    recorder.send_signal(signal.SIGINT)
    recorder.wait()
    cur.execute("RESET hannoy.ef_search")
    script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,dso"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    os.remove(data)
    categories, leaves, samples = Counter(), Counter(), 0
    for stack in parse_perf_script(script):
        samples += 1
        categories[categorise(stack)] += 1
        leaves[stack[0][0]] += 1
    if samples == 0:
        return {"problem": "perf recorded no samples"}
    result = {
        "ef_search": PROFILE_EF, "queries": done, "seconds": wall, "samples": samples,
        "event": "cpu-clock (software), DWARF call graphs", "hardware_counters": hardware_counters_work(),
        "backend_cpu_us_per_query": backend_us, "client_latency_us_per_query": latency_us,
        "backend_cpu_us_per_query_under_perf": cpu / done * 1e6,
        "categories": [{"category": name, "share": count / samples, "us_per_query": count / samples * backend_us}
                       for name, count in categories.most_common()],
        "top_symbols": [{"symbol": name, "share": count / samples} for name, count in leaves.most_common(15)]}
    bench.log(f"profile: {done:,} queries at ef_search {PROFILE_EF} under perf, {samples:,} samples; without perf "
              f"the backend uses {backend_us:.0f} us of CPU per query of {latency_us:.0f} us latency")
    for row in result["categories"]:
        bench.log(f"  {row['share'] * 100:5.1f}%  {row['us_per_query']:6.1f} us  {row['category']}")
    return result
