"""Reports of a benchmark run: a Markdown summary, the JSON of every figure, and PNG plots,
each set against the recorded baseline of the same data set (bench/baselines/*.json) and the
performance targets.
"""

import glob
import json
import os

import numpy as np

# Performance targets on Fashion-MNIST.
TARGET_SPEEDUP = 2.0           # queries/s over pgvector at equal recall, single client
TARGET_RECALL = 0.99           # ... at recall@10 of at least this
TARGET_SIZE_RATIO = 1.12       # index bytes per vector over raw vector bytes
TARGET_LINK_BYTES = 200        # graph links, bytes per vector, m = 16
TARGET_COLD_MS = 50            # first query after a restart with the page cache dropped


def load_baseline(baselines_dir, dataset_name):
    for path in sorted(glob.glob(os.path.join(baselines_dir, "*.json"))):
        with open(path) as f:
            baseline = json.load(f)
        if baseline.get("dataset") == dataset_name:
            baseline["file"] = os.path.basename(path)
            return baseline
    return None


def measured_baseline(pgvector_results, dataset_name):
    """pgvector's figures measured in this run, shaped like a recorded baseline (what was not
    measured here is absent rather than taken from a recording)."""
    version = pgvector_results["version"]
    return {"system": f"pgvector {version}", "dataset": dataset_name, "measured": True,
            "source": f"pgvector {version} measured in this run: same rows, queries, client and settings",
            "file": None, "build": pgvector_results["build"], "size": pgvector_results["size"],
            "search": pgvector_results["search"],
            # hannoy's passes interleaved with pgvector's in the same measure (older results lack them)
            "paired_hannoy_search": pgvector_results.get("hannoy_search")}


def paired_sweep(baseline):
    """hannoy's passes interleaved with pgvector's in this run, or None."""
    return baseline.get("paired_hannoy_search") if baseline else None


def compared_sweep(results, baseline):
    """hannoy's sweep to compare with the baseline's: the passes interleaved with pgvector's when
    it was measured in this run, else the search measure's."""
    return paired_sweep(baseline) or results.get("search", {}).get("sweep", [])


def _provenance(baseline):
    return "measured" if baseline.get("measured") else "recorded"


def baseline_qps_at(baseline_search, recall):
    """The baseline's single-client queries/s at `recall`, interpolated linearly between its
    measured points. Above its best recall, its throughput there: it can only be slower at a
    higher recall, so the comparison never flatters hannoy. None below its lowest recall."""
    points = sorted((p["recall"], p["qps"]) for p in baseline_search)
    if recall < points[0][0]:
        return None
    if recall >= points[-1][0]:
        return points[-1][1]
    for (r0, q0), (r1, q1) in zip(points, points[1:]):
        if r0 <= recall <= r1:
            return q0 + (q1 - q0) * (recall - r0) / (r1 - r0) if r1 > r0 else min(q0, q1)
    return None


def evaluate_targets(results, baseline):
    """Each performance target with the measured value, whether it is met, and the gap."""
    targets = []
    sweep = compared_sweep(results, baseline)
    interleaved = " (passes interleaved with pgvector's)" if paired_sweep(baseline) else ""
    if baseline and sweep:
        comparable = [(p, baseline_qps_at(baseline["search"], p["recall"])) for p in sweep
                      if p["recall"] >= TARGET_RECALL]
        comparable = [(p, q) for p, q in comparable if q]
        if comparable:
            ratios = [(p["qps"] / q, p, q) for p, q in comparable]
            worst = min(ratios, key=lambda r: r[0])
            detail = "; ".join(f"ef {p['ef_search']}: recall {p['recall']:.4f}, {p['qps']:,.0f} vs {q:,.0f} q/s = "
                               f"{ratio:.2f}x" for ratio, p, q in ratios)
            targets.append({"target": f"at recall@10 >= {TARGET_RECALL}: >= {TARGET_SPEEDUP:g}x pgvector's "
                                      "queries/s at equal recall, one client",
                            "measured": f"{worst[0]:.2f}x at worst (ef_search {worst[1]['ef_search']}){interleaved}; "
                                        f"{detail}",
                            "met": worst[0] >= TARGET_SPEEDUP,
                            "gap": None if worst[0] >= TARGET_SPEEDUP else
                            f"needs {TARGET_SPEEDUP / worst[0]:.2f}x more queries/s at ef_search "
                            f"{worst[1]['ef_search']}"})
        else:
            targets.append({"target": f"at recall@10 >= {TARGET_RECALL}: >= {TARGET_SPEEDUP:g}x pgvector",
                            "measured": "no sweep point reached the recall", "met": False, "gap": "recall"})
    size = results.get("size")
    if size:
        limit = TARGET_SIZE_RATIO * size["raw_vector_bytes"]
        targets.append({"target": f"index size <= {TARGET_SIZE_RATIO} x raw vector bytes "
                                  f"(<= {limit:,.0f} B/vector)",
                        "measured": f"{size['bytes_per_vector']:,.0f} B/vector = {size['ratio_to_raw']:.3f} x raw",
                        "met": size["bytes_per_vector"] <= limit,
                        "gap": None if size["bytes_per_vector"] <= limit else
                        f"{size['bytes_per_vector'] - limit:,.0f} B/vector over"})
        if size.get("links_bytes_per_vector") is not None:
            links = size.get("graph_bytes_per_vector", size["links_bytes_per_vector"])
            what = (f"{links:,.0f} B/vector: links {size['links_bytes_per_vector']:,.0f} + in-links "
                    f"{size['inlinks_bytes_per_vector']:,.0f}" if "graph_bytes_per_vector" in size else
                    f"{links:,.0f} B/vector")
            targets.append({"target": f"graph links <= {TARGET_LINK_BYTES} B/vector at m = 16",
                            "measured": f"{what} (LMDB pages of the links and in-links databases; "
                                        f"{size['links_per_vector']:.1f} links/vector)",
                            "met": links <= TARGET_LINK_BYTES,
                            "gap": None if links <= TARGET_LINK_BYTES else f"{links - TARGET_LINK_BYTES:,.0f} B over"})
    cold = results.get("cold_start")
    if cold:
        dropped = "" if cold["page_cache_dropped"] else " (page cache NOT dropped)"
        targets.append({"target": f"cold start: first query after restart, page cache dropped, well under "
                                  f"{TARGET_COLD_MS} ms",
                        "measured": f"{cold['first_query_ms']:.1f} ms (median){dropped}",
                        "met": cold["first_query_ms"] < TARGET_COLD_MS and cold["page_cache_dropped"],
                        "gap": None if cold["first_query_ms"] < TARGET_COLD_MS else
                        f"{cold['first_query_ms'] - TARGET_COLD_MS:.1f} ms over"})
    return targets


# --- Markdown ------------------------------------------------------------------------------------

def _table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _num(value, digits=0, unit=""):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{unit}"


def _mb(n):
    return "–" if n is None else f"{n / 1e6:,.1f} MB"


def _find(rows, **match):
    for row in rows or []:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _bytes(setting):
    units = {"kB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}
    for unit, size in units.items():
        if setting.endswith(unit):
            return float(setting[:-len(unit)]) * size
    return float(setting)


def _build_order(build):
    """Serial before parallel, more maintenance_work_mem first."""
    return build["max_parallel_maintenance_workers"], -_bytes(build["maintenance_work_mem"])


def markdown(results, baseline):
    run, env, data = results["run"], results["environment"], results["dataset"]
    settings = env["settings"]
    lines = [f"# hannoy benchmark: {data['description']}", ""]
    lines += [f"`{run['command']}` ({run['plan']} protocol), {run['finished']}, {run['seconds'] / 60:.1f} min.",
              f"Machine: {env['cpu']}, {env['cores']} cores, {env['memory_bytes'] / 2**30:.0f} GiB RAM, {env['os']}; "
              f"PostgreSQL {env['postgresql'].split(' ')[0]}, hannoy {env['hannoy_version']} "
              f"({env['hannoy_kernels']} kernels).",
              f"Server: shared_buffers {settings['shared_buffers']}, work_mem {settings['work_mem']}, "
              f"maintenance_work_mem {settings['maintenance_work_mem']}, jit {settings['jit']}, "
              f"fsync {settings['fsync']}. Index: m = {run['m']}, ef_construction = {run['ef_construction']}, "
              f"real_l2_ops. One client: Python + psycopg2, prepared statement (generic plan), autocommit, "
              f"latency around EXECUTE + fetch; {data['queries']:,} queries, k = 10.",
              f"Shared {env['cores']}-core machine: timings are medians of {run['runs']} run(s) while other work "
              f"ran (load average {env['load_average_at_start'][0]:.1f} at the start, "
              f"{run['load_average_at_end'][0]:.1f} at the end); treat them as ±10% or worse."]
    if results.get("durations"):
        lines += ["Time per part: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in
                                                 results["durations"].items()) + "."]
    if baseline and baseline.get("measured"):
        lines += [f"pgvector figures: {baseline['source']}."]
    elif baseline:
        why = ("pgvector is not installed on this server" if "pgvector" in results
               else "the pgvector measure was not run")
        lines += [f"pgvector figures: {baseline['source']} (bench/baselines/{baseline['file']}), not measured "
                  f"in this run ({why})."]
    lines.append("")

    lines += ["## Summary", ""]
    rows = []
    builds = sorted(results.get("build", []), key=_build_order)
    for b in builds:
        base = _find(baseline and baseline.get("build"), maintenance_work_mem=b["maintenance_work_mem"],
                     max_parallel_maintenance_workers=b["max_parallel_maintenance_workers"])
        workers = b["max_parallel_maintenance_workers"]
        what = (f"build, maintenance_work_mem {b['maintenance_work_mem']}, "
                + ("serial" if workers == 0 else f"{workers} parallel worker(s) allowed"))
        note = f" ({b['workers_seen']} workers used: hannoy builds serially)" if workers and not b["workers_seen"] else ""
        memory = f"leader peak {b['peak_private_bytes'] / 2**20:,.0f} MiB private"
        if b.get("peak_shared_memory_bytes"):
            memory += f" + {b['peak_shared_memory_bytes'] / 2**20:,.0f} MiB shared"
        if b.get("worker_peak_private_bytes") is not None:
            memory += f"; each worker ≤ {b['worker_peak_private_bytes'] / 2**20:,.0f} MiB private"
            if b.get("worker_peak_shared_memory_bytes"):
                memory += f" + {b['worker_peak_shared_memory_bytes'] / 2**20:,.0f} MiB shared"
        rows.append([what, f"{b['median_seconds']:.1f} s, {memory}{note}",
                     _num(base and base["median_seconds"], 1, " s")])
    size = results.get("size")
    if size:
        base_size = baseline and baseline.get("size")
        rows.append(["index size", f"{_mb(size['file_bytes'])}, {size['bytes_per_vector']:,.0f} B/vector "
                                   f"(raw vector {size['raw_vector_bytes']:,})",
                     f"{_mb(base_size['bytes'])}, {base_size['bytes_per_vector']:,} B/vector" if base_size else "–"])
    for point in results.get("search", {}).get("sweep", []):
        if point["ef_search"] in (10, 40, 160):
            base = _find(baseline and baseline.get("search"), ef_search=point["ef_search"])
            rows.append([f"ef_search {point['ef_search']}: recall@10, queries/s, p50",
                         f"{point['recall']:.4f}, {point['qps']:,.0f} q/s, {point['p50_ms']:.2f} ms",
                         f"{base['recall']:.4f}, {base['qps']:,.0f} q/s, {base['p50_ms']:.2f} ms" if base else "–"])
    if results.get("exact"):
        e = results["exact"]
        base = baseline and baseline.get("exact")
        rows.append(["exact search (sequential scan)", f"{e['qps']:.1f} q/s, p50 {e['p50_ms']:.1f} ms",
                     f"{base['qps']} q/s, p50 {base['p50_ms']} ms" if base else "–"])
    updates = results.get("updates")
    base_updates = baseline and baseline.get("updates")
    if updates:
        n = updates["insert_one_transaction"]["rows"]
        rows.append([f"{n:,} INSERTs: one transaction / autocommit",
                     f"{updates['insert_one_transaction']['rows_per_second']:,.0f} / "
                     f"{updates['insert_autocommit']['rows_per_second']:,.0f} rows/s",
                     f"{base_updates['insert_one_transaction_rows_per_second']} / "
                     f"{base_updates['insert_autocommit_rows_per_second']} rows/s" if base_updates else "–"])
        d = updates["delete"]
        rows.append([f"VACUUM after deleting {d['rows']:,} of {d['of_rows']:,} rows; recall after",
                     f"{d['vacuum_seconds']:.1f} s{' (second attempt: see Updates)' if d.get('vacuum_problem') else ''}; "
                     f"{updates['recall_after_vacuum']:.4f}",
                     f"{base_updates['vacuum_seconds']} s ({base_updates['delete_rows']:,} of "
                     f"{base_updates['delete_of_rows']:,}); {base_updates['recall_after_vacuum']}"
                     if base_updates else "–"])
        rows.append([f"COPY of {updates['copy']['rows']:,} rows into the indexed table",
                     f"{updates['copy']['rows_per_second']:,.0f} rows/s", "–"])
        cvr = updates.get("copy_vs_rebuild")
        if cvr:
            rows.append([f"COPY of {cvr['rows']:,} rows into the indexed table vs DROP INDEX + COPY + CREATE INDEX",
                         f"{cvr['copy_into_index_seconds']:.1f} s vs {cvr['drop_copy_rebuild_seconds']:.1f} s "
                         f"(ratio {cvr['ratio']:.2f}, target ≤ 3)", "–"])
    cold = results.get("cold_start")
    if cold:
        rows.append(["first query after restart, page cache dropped",
                     f"{cold['first_query_ms']:.1f} ms (+ {cold['connect_ms']:.1f} ms to connect)", "–"])
    lines += _table(["", "hannoy", baseline["system"] if baseline else "baseline"], rows) + [""]

    targets = results.get("targets")
    if targets:
        lines += ["## Targets", ""]
        lines += _table(["target", "measured", "met"],
                        [[t["target"], t["measured"], ("**met**" if t["met"] else f"**not met**: {t['gap']}")]
                         for t in targets]) + [""]

    sweep = results.get("search", {}).get("sweep", [])
    if sweep:
        concurrent = results.get("concurrent", [])
        client_counts = sorted({r["clients"] for r in concurrent})
        headers = ["ef_search", "recall@10", "q/s", "p50 ms", "p99 ms"]
        headers += [f"q/s, {c} clients" for c in client_counts]
        if baseline:
            headers += ["pgvector recall", "pgvector q/s", "pgvector q/s at hannoy's recall"]
        rows = []
        for p in sweep:
            row = [p["ef_search"], f"{p['recall']:.4f}", _num(p["qps"]), f"{p['p50_ms']:.2f}", f"{p['p99_ms']:.2f}"]
            for c in client_counts:
                other = _find(concurrent, clients=c, ef_search=p["ef_search"])
                row.append(_num(other and other["qps"]))
            if baseline:
                base = _find(baseline["search"], ef_search=p["ef_search"])
                compared = _find(compared_sweep(results, baseline), ef_search=p["ef_search"]) or p
                at = baseline_qps_at(baseline["search"], compared["recall"])
                row += [f"{base['recall']:.4f}" if base else "–", _num(base and base["qps"]),
                        f"{at:,.0f} (hannoy {compared['qps'] / at:.2f}x)" if at else "–"]
            rows.append(row)
        lines += ["## Recall and speed", ""] + _table(headers, rows) + [""]
        paired = paired_sweep(baseline)
        if paired:
            lines += ["The ratios compare pgvector's passes with hannoy's run between them in the same measure "
                      "(hannoy's queries/s there: " + ", ".join(
                          f"ef {p['ef_search']} {p['qps']:,.0f}" for p in paired) + "), not with the sweep above, "
                      "which ran minutes earlier.", ""]
        if concurrent:
            lines += [f"Several clients: the queries split between separate client processes, each with its own "
                      f"connection; p50/p99 of those runs are in the JSON. The machine has {env['cores']} cores for "
                      "the clients and the server together.", ""]

    filtered = results.get("filtered")
    if filtered:
        rows = []
        for r in filtered["rows"]:
            how = "exact (sequential scan)" if r.get("exact") else f"hannoy, ef_search {r['ef_search']}"
            rows.append([r["filter"], how, f"{r['recall']:.4f}", f"{r['rows_returned']:.1f}", _num(r["qps"]),
                         f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"])
        lines += ["## Filtered queries: `WHERE label = $2 ORDER BY embedding <-> $1 LIMIT 10`", ""]
        lines += _table(["filter", "search", "recall@10", "rows (of 10)", "q/s", "p50 ms", "p99 ms"], rows)
        lines += ["", "hannoy filters the rows its search returns and keeps widening its beam until LIMIT rows "
                      "pass; each label holds 10% of the rows."]
        if baseline and baseline.get("filtered"):
            lines += ["pgvector 0.8.6 (recorded): " + "; ".join(
                f"{b['filter']}, {b['mode']}, ef {b['ef_search']}: recall {b['recall']}, {b['rows_returned']} rows, "
                f"{b['qps']} q/s" for b in baseline["filtered"]) + "."]
        lines.append("")

    if updates:
        rows = [["INSERT one by one, one transaction", f"{updates['insert_one_transaction']['rows']:,}",
                 f"{updates['insert_one_transaction']['rows_per_second']:,.0f} rows/s",
                 f"p50 {updates['insert_one_transaction']['p50_ms']:.2f} ms"],
                ["INSERT one by one, autocommit", f"{updates['insert_autocommit']['rows']:,}",
                 f"{updates['insert_autocommit']['rows_per_second']:,.0f} rows/s",
                 f"p50 {updates['insert_autocommit']['p50_ms']:.2f} ms"],
                ["recall@10 after the inserts", "", f"{updates['recall_after_inserts']:.4f}", ""],
                [f"DELETE {updates['delete']['fraction']:.0%} of the rows, then VACUUM", f"{updates['delete']['rows']:,} of {updates['delete']['of_rows']:,}",
                 f"VACUUM {updates['delete']['vacuum_seconds']:.1f} s", f"DELETE {updates['delete']['delete_seconds']:.1f} s"],
                ["recall@10 after VACUUM", "", f"{updates['recall_after_vacuum']:.4f}", ""],
                ["COPY (binary) into the indexed table", f"{updates['copy']['rows']:,}",
                 f"{updates['copy']['rows_per_second']:,.0f} rows/s", f"{updates['copy']['seconds']:.1f} s"],
                ["recall@10 after the COPY", "", f"{updates['recall_after_copy']:.4f}", ""],
                ["hannoy_verify afterwards", "", f"structure ok = {updates['verify_after']['structure_ok']}",
                 f"{updates['verify_after']['unreachable']} items unreachable until the next VACUUM"],
                ["index file afterwards", f"{updates['size_after']['items']:,} live, "
                 f"{updates['size_after']['deleted_items']:,} deleted", _mb(updates['size_after']['file_bytes']),
                 f"{updates['size_after']['bytes_per_live_vector']:,.0f} B per live vector"]]
        cvr = updates.get("copy_vs_rebuild")
        if cvr:
            rows += [["the same rows again: DELETE + VACUUM, then DROP INDEX, COPY, CREATE INDEX",
                      f"{cvr['rows']:,} ({cvr['table_rows']:,} in the table)",
                      f"{cvr['drop_copy_rebuild_seconds']:.1f} s (COPY {cvr['copy_part_seconds']:.1f} s)",
                      f"COPY into the index takes {cvr['ratio']:.2f}× as long"],
                     ["recall@10 after the rebuild", "", f"{cvr['recall_after_rebuild']:.4f}", ""]]
        lines += [f"## Updates (recall at ef_search {updates['ef_search']})", ""]
        lines += _table(["operation", "rows", "result", ""], rows) + [""]
        if updates["delete"].get("vacuum_problem"):
            lines += [f"**VACUUM problem:** {updates['delete']['vacuum_problem']}. The index then held a multiple of "
                      "10,000 heap TIDs, where hannoy's ambulkdelete rescans its last chunk of TIDs forever (and "
                      "its list of dead TIDs grows by gigabytes). The time above is a second VACUUM after one more "
                      "INSERT.", ""]

    if cold:
        lines += ["## Cold start", ""]
        first_read = np.median([r["first_query_read_bytes"] or 0 for r in cold["runs"]])
        first_faults = np.median([r["first_query_major_faults"] for r in cold["runs"]])
        lines += [f"Server restarted, OS page cache {'dropped' if cold['page_cache_dropped'] else 'NOT dropped'}, "
                  f"new connection, queries sent as literals; medians of {len(cold['runs'])}:", ""]
        rows = [["restart, page cache dropped", f"{cold['connect_ms']:.1f}", f"{cold['first_query_ms']:.1f}",
                 f"{cold['second_query_ms']:.1f}", f"{cold['later_queries_median_ms']:.1f}",
                 f"{_mb(first_read)}, {first_faults:.0f} major faults"]]
        for label, r in (("restart, page cache kept", cold["warm_restart"]),
                         ("restart, page cache dropped, whole index file read first "
                          f"({(cold['whole_file_preread'] or {}).get('preread_seconds') or 0:.2f} s for "
                          f"{_mb(cold['index_file_bytes'])})", cold["whole_file_preread"])):
            if r:
                rows.append([label, f"{r['connect_ms']:.1f}", f"{r['first_query_ms']:.1f}", f"{r['second_query_ms']:.1f}",
                             f"{r['later_queries_median_ms']:.1f}",
                             f"{_mb(r['first_query_read_bytes'])}, {r['first_query_major_faults']} major faults"])
        for label, what in (("upper_layers", "upper layers' vectors"), ("whole_file", "whole file")):
            r = (cold.get("prefetch") or {}).get(label)
            if r:
                first_read = np.median([x["first_query_read_bytes"] or 0 for x in r["runs"]])
                first_faults = np.median([x["first_query_major_faults"] for x in r["runs"]])
                rows.append([f"restart, page cache dropped, hannoy.prefetch_memory = {r['setting']} ({what})",
                             f"{r['connect_ms']:.1f}", f"{r['first_query_ms']:.1f}", f"{r['second_query_ms']:.1f}",
                             f"{r['later_queries_median_ms']:.1f}", f"{_mb(first_read)}, {first_faults:.0f} major faults"])
        lines += _table(["", "connect ms", "1st query ms", "2nd query ms", "3rd-12th, median ms",
                         "1st query read"], rows)
        lines += ["", f"hannoy.prefetch_memory: {cold['prefetch_memory_setting']}.", ""]

    small = results.get("small_memory")
    if small:
        lines += ["## Less memory than the index", ""]
        if small.get("rows"):
            in_memory = {r["ef_search"]: r for r in results.get("search", {}).get("sweep", [])}
            lines += [f"The backend in a memory cgroup whose limit (its own memory and the page cache it fills "
                      f"included) is below the index file's {_mb(small['index_file_bytes'])}; shared_buffers "
                      f"{small['shared_buffers']}, page cache dropped, one warm-up pass, then "
                      f"{small['rows'][0]['queries']:,} queries per ef_search:", ""]
            rows = []
            for r in small["rows"]:
                free = in_memory.get(r["ef_search"])
                rows.append([f"{_mb(r['limit_bytes'])} ({r['fraction']:.2f} x the file)", str(r["ef_search"]),
                             f"{r['recall']:.4f}", f"{r['qps']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                             _num(r["read_kib_per_query"], 0), f"{r['major_faults_per_query']:.0f}",
                             f"{free['qps']:,.0f}" if free else "–"])
            lines += _table(["memory limit", "ef_search", "recall@10", "q/s", "p50 ms", "p99 ms",
                             "KiB read per query", "major faults per query", "q/s in memory"], rows) + [""]
        if small.get("problem"):
            lines += [f"Not measured{' further' if small.get('rows') else ''}: {small['problem']}", ""]

    if size and size.get("lmdb"):
        rows = [[name, f"{s.get('entries', 0):,}", f"{s['bytes'] / size['items']:,.1f}"]
                for name, s in size["lmdb"]["databases"].items() if s["bytes"]]
        lines += ["## Index file", ""]
        lines += [f"{_mb(size['file_bytes'])} for {size['items']:,} vectors = {size['bytes_per_vector']:,.0f} B/vector "
                  f"({size['ratio_to_raw']:.3f} x the raw {size['raw_vector_bytes']:,} B); {size['max_level'] + 1} "
                  f"layers, {size['links']:,} links ({size['links_per_vector']:.1f} per vector). Per LMDB database "
                  "(mdb_stat: branch + leaf + overflow pages x page size):", ""]
        lines += _table(["database", "entries", "B/vector"], rows) + [""]

    profile = results.get("profile")
    if profile and not profile.get("problem"):
        lines += ["## Where a query's time goes", ""]
        lines += [f"perf ({profile['event']}) on the backend, {profile['queries']:,} queries at ef_search "
                  f"{profile['ef_search']}: the backend spends {profile['backend_cpu_us_per_query']:.0f} µs of CPU "
                  f"per query; the client sees {profile['client_latency_us_per_query']:.0f} µs.", ""]
        lines += _table(["share", "µs/query", "where"],
                        [[f"{c['share'] * 100:.1f}%", f"{c['us_per_query']:.1f}", c["category"]]
                         for c in profile["categories"]]) + [""]
    elif profile:
        lines += ["## Where a query's time goes", "", f"Not profiled: {profile['problem']}", ""]
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------------------

def plots(results, baseline, prefix):
    """Writes <prefix>-recall-qps.png and <prefix>-build.png; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    data = results["dataset"]
    sweep = results.get("search", {}).get("sweep", [])
    if sweep:
        fig, ax = plt.subplots(figsize=(8, 5.5))
        series = [("hannoy, 1 client", sweep, "o-", "C0")]
        for i, count in enumerate(sorted({r["clients"] for r in results.get("concurrent", [])})):
            rows = sorted([r for r in results["concurrent"] if r["clients"] == count], key=lambda r: r["ef_search"])
            series.append((f"hannoy, {count} clients", rows, "o--", f"C{i + 2}"))
        if baseline:
            series.append((f"{baseline['system']}, 1 client ({_provenance(baseline)})", baseline["search"], "s-",
                           "C3"))
        for label, rows, style, color in series:
            ax.plot([r["recall"] for r in rows], [r["qps"] for r in rows], style, color=color, label=label)
            if label.endswith("1 client") or "pgvector" in label:
                for r in rows:
                    ax.annotate(str(r["ef_search"]), (r["recall"], r["qps"]), textcoords="offset points",
                                xytext=(4, 4), fontsize=7, color=color)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries per second (log scale)")
        ax.set_title(f"{data['description']}\nrecall vs speed over ef_search (numbers on the points)", fontsize=10)
        ax.axvline(TARGET_RECALL, color="grey", linewidth=0.8, linestyle=":")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = f"{prefix}-recall-qps.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    builds = sorted(results.get("build", []), key=_build_order)
    size = results.get("size")
    if builds:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5), gridspec_kw={"width_ratios": [3, 2]})
        labels = [f"{b['maintenance_work_mem']}\n" + ("serial" if not b["max_parallel_maintenance_workers"] else
                                                      f"{b['max_parallel_maintenance_workers']} worker allowed")
                  for b in builds]
        x = np.arange(len(builds))
        hannoy_seconds = [b["median_seconds"] for b in builds]
        base_seconds = [(_find(baseline and baseline.get("build"), maintenance_work_mem=b["maintenance_work_mem"],
                               max_parallel_maintenance_workers=b["max_parallel_maintenance_workers"]) or {})
                        .get("median_seconds", 0) for b in builds]
        width = 0.38
        bars = left.bar(x - width / 2, hannoy_seconds, width, label="hannoy", color="C0")
        left.bar_label(bars, fmt="%.1f s", fontsize=8)
        if baseline:
            bars = left.bar(x + width / 2, base_seconds, width, label=f"{baseline['system']} ({_provenance(baseline)})",
                            color="C3")
            left.bar_label(bars, fmt="%.1f s", fontsize=8)
        left.set_xticks(x, labels, fontsize=8)
        left.set_ylabel("CREATE INDEX, seconds (median)")
        left.set_title("build time (maintenance_work_mem, workers)", fontsize=10)
        left.legend(fontsize=8)
        if size:
            names = ["raw vector", "hannoy"] + ([baseline["system"]] if baseline and baseline.get("size") else [])
            values = [size["raw_vector_bytes"], size["bytes_per_vector"]] + (
                [baseline["size"]["bytes_per_vector"]] if len(names) == 3 else [])
            bars = right.bar(names, values, color=["grey", "C0", "C3"][:len(names)])
            right.bar_label(bars, fmt="%.0f", fontsize=8)
            right.axhline(TARGET_SIZE_RATIO * size["raw_vector_bytes"], color="black", linestyle=":", linewidth=0.8,
                          label=f"target: {TARGET_SIZE_RATIO} x raw")
            right.set_ylabel("index bytes per vector")
            right.set_title("index size", fontsize=10)
            right.legend(fontsize=8, loc="lower right")
        fig.suptitle(data["description"], fontsize=10)
        fig.tight_layout()
        path = f"{prefix}-build.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def to_json(value):
    """numpy scalars and arrays as plain JSON values."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
