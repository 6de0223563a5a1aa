#!/usr/bin/python3
"""hannoy's benchmark, Python side: measures a hannoy index on a running cluster and writes
the results. scripts/bench.sh sets up that cluster and calls this; see bench/README.md.

Results go to bench/results/<data set>[-quick].md, .json, -recall-qps.png and -build.png; the
Markdown is also printed at the end. Progress is printed as it goes.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

try:
    import numpy  # noqa: F401
    import psycopg2
    import matplotlib  # noqa: F401
except ImportError as missing:
    sys.exit(f"bench/run.py: {missing.name} is missing: run it with Debian's /usr/bin/python3 "
             "(packages python3-numpy, python3-psycopg2, python3-matplotlib)")

from hannoy_bench import datasets, measures, report  # noqa: E402
from hannoy_bench.database import BenchError, Cluster  # noqa: E402


class Log:
    """Progress lines prefixed with the time since the start."""

    def __init__(self):
        self.started = time.monotonic()

    def __call__(self, message):
        elapsed = time.monotonic() - self.started
        print(f"[{int(elapsed // 60):2d}:{int(elapsed % 60):02d}] {message}", flush=True)


def parse_args():
    parser = argparse.ArgumentParser(prog="scripts/bench.sh", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="measures, in order: " + ", ".join(n for n, _, _ in measures.MEASURES))
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run in under 3 minutes: 1,000 queries, a short sweep, one run each")
    parser.add_argument("--dataset", choices=["fashion-mnist", "synthetic"], default="fashion-mnist")
    parser.add_argument("--rows", type=int, default=1_000_000, help="synthetic: rows (default %(default)s)")
    parser.add_argument("--dims", type=int, default=128, help="synthetic: dimensions (default %(default)s)")
    parser.add_argument("--clusters", type=int, default=1000, help="synthetic: mixture components (default %(default)s)")
    parser.add_argument("--sigma", type=float, default=0.6, help="synthetic: spread of a component (default %(default)s)")
    parser.add_argument("--synthetic-queries", type=int, default=2000, help="synthetic: queries (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="synthetic: seed (default %(default)s)")
    parser.add_argument("--queries", type=int, help="queries to use (default: all, 1,000 with --quick)")
    parser.add_argument("--runs", type=int, help="runs per timed measurement (default: 3, 1 with --quick)")
    parser.add_argument("--build-runs", type=int, help="builds per setting (default: 3, 1 with --quick)")
    parser.add_argument("--build-settings", help="builds to time, as maintenance_work_mem:parallel workers, "
                        "comma-separated; the last one's index is kept (default: 2GB:1,64MB:0,2GB:0; "
                        "2GB:0 with --quick)")
    parser.add_argument("--only", help="comma-separated measures to run (with those every run needs)")
    parser.add_argument("--skip", help="comma-separated measures to leave out")
    parser.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    parser.add_argument("--cache-dir", default=os.path.join(HERE, "cache"), help="ground truth cache")
    parser.add_argument("--host", default=os.environ.get("HANNOY_BENCH_DIR", "/var/tmp/hannoy-bench"),
                        help="the cluster's socket directory (scripts/bench.sh passes it)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("HANNOY_BENCH_PORT", "5520")))
    args = parser.parse_args()
    names = {n for n, _, _ in measures.MEASURES}
    for option in ("only", "skip"):
        chosen = set(filter(None, (getattr(args, option) or "").split(",")))
        if chosen - names:
            parser.error(f"--{option}: unknown measures {', '.join(sorted(chosen - names))}")
        setattr(args, option, chosen)
    if args.build_settings:
        try:
            args.build_settings = [(memory, int(workers)) for memory, workers in
                                   (item.split(":") for item in args.build_settings.split(","))]
        except ValueError:
            parser.error("--build-settings: expected e.g. 2GB:1,2GB:0")
    return args


def selected_measures(args):
    chosen = []
    for name, function, what in measures.MEASURES:
        if args.only and name not in args.only and name not in measures.REQUIRED:
            continue
        if name in args.skip and name not in measures.REQUIRED:
            continue
        chosen.append((name, function, what))
    return chosen


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip() or None
    except OSError:
        return None


def main():
    args = parse_args()
    log = Log()
    plan = (measures.QUICK if args.quick else measures.FULL).scaled(args.queries, args.runs, args.build_runs)
    if args.build_settings:
        plan.build_configs = args.build_settings
    if args.dataset == "fashion-mnist":
        dataset = datasets.fashion_mnist()
    else:
        log(f"generating {args.rows:,} x {args.dims} synthetic rows")
        dataset = datasets.gaussian_mixture(args.rows, args.dims, args.clusters, args.sigma,
                                            args.synthetic_queries, seed=args.seed)
    log(f"data: {dataset.description}; {plan.name} protocol")
    name = dataset.name + ("-quick" if args.quick else "")
    os.makedirs(args.results_dir, exist_ok=True)
    prefix = os.path.join(args.results_dir, name)
    baseline = report.load_baseline(os.path.join(HERE, "baselines"), dataset.name)

    bench = measures.Bench(Cluster(ROOT, args.host, args.port), dataset, plan, args.cache_dir, log)
    bench.connect()
    started = time.monotonic()
    command = " ".join(["scripts/bench.sh"] + sys.argv[1:])
    bench.results["run"] = {"command": command, "plan": plan.name, "runs": plan.runs, "m": plan.m,
                            "ef_construction": plan.ef_construction, "git": git_commit(),
                            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    bench.results["dataset"] = {**dataset.params(), "queries": len(bench.queries)}
    for measure, function, what in selected_measures(args):
        log(f"== {measure}: {what}")
        measure_started = time.monotonic()
        function(bench)
        bench.results.setdefault("durations", {})[measure] = round(time.monotonic() - measure_started, 1)
        write_json(prefix, bench.results, complete=False)
    bench.close()

    results = bench.results
    if results.get("pgvector", {}).get("available"):
        baseline = report.measured_baseline(results["pgvector"], dataset.name)
    results["run"]["seconds"] = time.monotonic() - started
    results["run"]["load_average_at_end"] = os.getloadavg()
    results["run"]["finished"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    if dataset.name == "fashion-mnist":
        results["targets"] = report.evaluate_targets(results, baseline)
    results["baseline"] = baseline and {k: baseline.get(k) for k in ("system", "source", "file", "measured")}
    write_json(prefix, results, complete=True)
    text = report.markdown(results, baseline)
    pictures = report.plots(results, baseline, prefix)
    if pictures:
        text += "\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in pictures) + "\n"
    with open(prefix + ".md", "w") as f:
        f.write(text)
    print("\n" + text)
    log(f"wrote {', '.join(os.path.relpath(p) for p in [prefix + '.md', prefix + '.json'] + pictures)}")


def write_json(prefix, results, complete):
    """The results so far; a run that stops half-way leaves its partial figures in .json.tmp."""
    path = prefix + ".json" if complete else prefix + ".json.tmp"
    with open(path + ".part", "w") as f:
        json.dump(report.to_json({**results, "complete": complete}), f, indent=1)
    os.replace(path + ".part", path)
    if complete and os.path.exists(prefix + ".json.tmp"):
        os.remove(prefix + ".json.tmp")


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    try:
        main()
    except BenchError as e:
        sys.exit(f"bench: {e}")
    except psycopg2.Error as e:
        sys.exit(f"bench: PostgreSQL error: {str(e).strip()}")
    except KeyboardInterrupt:
        sys.exit("bench: interrupted")
