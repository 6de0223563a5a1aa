"""Tests of the benchmark's reports: pgvector's figures measured in the run replace the
recorded ones everywhere (tables, targets, plots), and the run says which it used."""

import copy
import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
sys.path.insert(0, BENCH)

from hannoy_bench import measures, report  # noqa: E402


def committed_results():
    """The committed Fashion-MNIST results, without what run.py derives from a baseline."""
    with open(os.path.join(BENCH, "results", "fashion-mnist.json")) as f:
        results = json.load(f)
    for key in ("targets", "baseline", "complete"):
        results.pop(key, None)
    return results


def pgvector_measured(results, speed_divisor):
    """pgvector figures as the pgvector measure stores them: hannoy's sweep at the same recall,
    `speed_divisor` times slower."""
    sweep = [{"ef_search": p["ef_search"], "recall": p["recall"], "qps": p["qps"] / speed_divisor,
              "p50_ms": p["p50_ms"] * speed_divisor, "p99_ms": p["p99_ms"] * speed_divisor}
             for p in results["search"]["sweep"]]
    builds = [{"maintenance_work_mem": b["maintenance_work_mem"],
               "max_parallel_maintenance_workers": b["max_parallel_maintenance_workers"],
               "median_seconds": 99.5, "runs": [99.5]} for b in results["build"]]
    return {"available": True, "version": "9.9.9", "build": builds,
            "size": {"bytes": 4096 * 60000, "bytes_per_vector": 4096}, "search": sweep}


class Reports(unittest.TestCase):
    def setUp(self):
        self.results = committed_results()

    def test_recorded_baseline_is_named_as_such(self):
        baseline = report.load_baseline(os.path.join(BENCH, "baselines"), "fashion-mnist")
        text = report.markdown(copy.deepcopy(self.results), baseline)
        self.assertIn("not measured in this run", text)
        self.assertIn(f"bench/baselines/{baseline['file']}", text)

    def test_measured_pgvector_replaces_the_recording(self):
        measured = pgvector_measured(self.results, 4.0)
        baseline = report.measured_baseline(measured, "fashion-mnist")
        text = report.markdown(copy.deepcopy(self.results), baseline)
        self.assertIn("pgvector 9.9.9 measured in this run", text)
        self.assertNotIn("bench/baselines", text)
        self.assertNotIn("not measured in this run", text)
        self.assertIn("99.5 s", text)  # its build times
        self.assertIn("4,096 B/vector", text)  # its size
        # Recorded-only figures are not mixed in: pgvector's VACUUM time was not measured.
        self.assertNotIn("100.2 s", text)

    def test_targets_use_the_measured_sweep(self):
        measured = pgvector_measured(self.results, 4.0)
        targets = report.evaluate_targets(self.results, report.measured_baseline(measured, "fashion-mnist"))
        speed = [t for t in targets if "queries/s" in t["target"]]
        self.assertEqual(len(speed), 1)
        self.assertTrue(speed[0]["met"])
        self.assertIn("4.00x at worst", speed[0]["measured"])
        slower = pgvector_measured(self.results, 1.5)
        targets = report.evaluate_targets(self.results, report.measured_baseline(slower, "fashion-mnist"))
        speed = [t for t in targets if "queries/s" in t["target"]][0]
        self.assertFalse(speed["met"])
        self.assertIn("1.50x at worst", speed["measured"])

    def test_targets_use_the_interleaved_passes_when_there_are_some(self):
        measured = pgvector_measured(self.results, 4.0)
        # hannoy's passes interleaved with pgvector's were slower than its own sweep: they count.
        measured["hannoy_search"] = [dict(p, qps=p["qps"] / 2.5) for p in self.results["search"]["sweep"]]
        baseline = report.measured_baseline(measured, "fashion-mnist")
        speed = [t for t in report.evaluate_targets(self.results, baseline) if "queries/s" in t["target"]][0]
        self.assertFalse(speed["met"])
        self.assertIn("1.60x at worst", speed["measured"])
        self.assertIn("interleaved", speed["measured"])
        text = report.markdown(copy.deepcopy(self.results), baseline)
        self.assertIn("(hannoy 1.60x)", text)
        self.assertIn("passes with hannoy's run between them", text)

    def test_small_memory_rows_sit_beside_the_in_memory_speed(self):
        results = copy.deepcopy(self.results)
        results.pop("small_memory", None)
        self.assertNotIn("Less memory than the index", report.markdown(copy.deepcopy(results), None))
        ef40 = [p for p in results["search"]["sweep"] if p["ef_search"] == 40][0]
        results["small_memory"] = {
            "index_file_bytes": 200 * 2**20, "shared_buffers": "16MB", "cgroup_version": 1, "problem": None,
            "rows": [{"limit_bytes": 100 * 2**20, "fraction": 0.5, "ef_search": 40, "queries": 1000,
                      "recall": 0.9912, "qps": 73.6, "p50_ms": 13.4, "p99_ms": 24.1,
                      "read_kib_per_query": 1052.0, "major_faults_per_query": 250.0}]}
        text = report.markdown(copy.deepcopy(results), None)
        self.assertIn("| 104.9 MB (0.50 x the file) | 40 | 0.9912 | 74 | 13.40 | 24.10 | 1,052 | 250 | "
                      f"{ef40['qps']:,.0f} |", text)
        results["small_memory"] = {"problem": "cannot create a memory cgroup: Read-only file system"}
        text = report.markdown(copy.deepcopy(results), None)
        self.assertIn("Not measured: cannot create a memory cgroup", text)

    def test_plots_are_written_for_both(self):
        recorded = report.load_baseline(os.path.join(BENCH, "baselines"), "fashion-mnist")
        measured = report.measured_baseline(pgvector_measured(self.results, 4.0), "fashion-mnist")
        with tempfile.TemporaryDirectory() as tmp:
            for name, baseline in (("recorded", recorded), ("measured", measured)):
                written = report.plots(copy.deepcopy(self.results), baseline, os.path.join(tmp, name))
                self.assertEqual(len(written), 2)
                for path in written:
                    self.assertGreater(os.path.getsize(path), 10000)


class FakeCursor:
    def __init__(self):
        self.statements = []

    def execute(self, sql, params=None):
        self.statements.append(sql)

    def fetchone(self):
        return None  # pg_available_extensions has no 'vector'


class FakeBench:
    def __init__(self):
        self.cur = FakeCursor()
        self.plan = measures.QUICK
        self.results = {}
        self.messages = []

    def log(self, message):
        self.messages.append(message)


class PgvectorMeasure(unittest.TestCase):
    def test_skipped_without_the_extension(self):
        bench = FakeBench()
        measures.pgvector(bench)
        self.assertEqual(bench.results["pgvector"], {"available": False})
        self.assertEqual(len(bench.cur.statements), 1, "nothing but the availability check ran")
        self.assertIn("pg_available_extensions", bench.cur.statements[0])


if __name__ == "__main__":
    unittest.main()
