#!/usr/bin/python3
"""Fashion-MNIST on hannoy: loads the 60,000 training images as vectors into PostgreSQL, builds a
hannoy index on them and measures it with the 10,000 test images (size, query plan, neighbours,
recall@10 against exact search, latency). Needs only Debian's python3-numpy and python3-psycopg2.

    fashion_mnist.py load [--reload]     create and fill the tables items and queries
    fashion_mnist.py demo                build the index and measure it
"""

import argparse
import gzip
import io
import os
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor

try:
    import numpy as np
    import psycopg2
except ImportError as missing:
    sys.exit(f"fashion_mnist.py: {missing.name} is missing: run it with Debian's /usr/bin/python3 "
             "(packages python3-numpy and python3-psycopg2)")

DATA_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIMS = 28 * 28
TABLES = {"items": ("train", 60000), "queries": ("t10k", 10000)}
INDEX_NAME = "items_embedding_idx"
K = 10
# ann-benchmarks' tolerance: a result counts when it is no farther than the true k-th neighbour + this.
RECALL_EPSILON = 1e-3
FLOAT4_OID = 700


class DemoError(Exception):
    """A problem the user can fix; printed without a traceback."""


# --- dataset -------------------------------------------------------------------------------------

def read_idx(path, expected_magic):
    """Reads a gzipped IDX file (big-endian magic, dimension sizes, then uint8 data)."""
    if not os.path.exists(path):
        raise DemoError(f"{path} not found: install the Debian package dataset-fashion-mnist "
                        "(scripts/setup.sh does) or pass --data-dir")
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DemoError(f"{path}: cannot read: {e}")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expected_magic:
        raise DemoError(f"{path}: not an IDX file of the expected kind (magic {magic:#010x})")
    ndims = magic & 0xFF
    shape = struct.unpack(f">{ndims}I", data[4:4 + 4 * ndims])
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndims)
    if values.size != int(np.prod(shape)):
        raise DemoError(f"{path}: truncated ({values.size} values for shape {shape})")
    return values.reshape(shape)


def read_split(data_dir, split):
    """Returns (images as n x 784 uint8, labels as n uint8) of 'train' or 't10k'."""
    images = read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"), 0x00000803)
    labels = read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"), 0x00000801)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DemoError(f"{data_dir}: {split} images {images.shape} do not match labels {labels.shape}")
    return images.reshape(-1, DIMS), labels


# --- PostgreSQL binary COPY ----------------------------------------------------------------------
# Every row has the same size (id, label, 784-element real[]), so numpy builds and parses whole
# batches of rows at once: far faster than formatting 47 million numbers as text.

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
ARRAY_ELEMENT = np.dtype([("len", ">i4"), ("value", ">f4")])
ARRAY_HEADER_BYTES = 20  # ndim, has-nulls flag, element type, dimension size, lower bound


def copy_row_dtype(with_label):
    fields = [("nfields", ">i2"), ("id_len", ">i4"), ("id", ">i4")]
    if with_label:
        fields += [("label_len", ">i4"), ("label", ">i4")]
    fields += [("array_len", ">i4"), ("ndim", ">i4"), ("has_nulls", ">i4"), ("elem_type", ">i4"),
               ("dim", ">i4"), ("lbound", ">i4"), ("elements", ARRAY_ELEMENT, (DIMS,))]
    return np.dtype(fields)


def copy_in(cur, table, images, labels, batch_rows=5000):
    """Appends rows (id = position in the dataset) to table with binary COPY, in batches."""
    dtype = copy_row_dtype(with_label=True)
    for start in range(0, len(images), batch_rows):
        batch = images[start:start + batch_rows]
        rows = np.zeros(len(batch), dtype=dtype)
        rows["nfields"] = 3
        rows["id_len"] = 4
        rows["id"] = np.arange(start, start + len(batch))
        rows["label_len"] = 4
        rows["label"] = labels[start:start + len(batch)]
        rows["array_len"] = ARRAY_HEADER_BYTES + DIMS * ARRAY_ELEMENT.itemsize
        rows["ndim"] = 1
        rows["elem_type"] = FLOAT4_OID
        rows["dim"] = DIMS
        rows["lbound"] = 1
        rows["elements"]["len"] = 4
        rows["elements"]["value"] = batch
        payload = io.BytesIO(COPY_HEADER + rows.tobytes() + COPY_TRAILER)
        cur.copy_expert(f"COPY {table} (id, label, embedding) FROM STDIN WITH (FORMAT binary)", payload)


def fetch_vectors(cur, table, ids=None):
    """Returns (ids, n x 784 float32 vectors) of table, ordered by id, read with binary COPY."""
    where = "" if ids is None else f" WHERE id IN ({','.join(str(int(i)) for i in ids)})"
    out = io.BytesIO()
    cur.copy_expert(f"COPY (SELECT id, embedding FROM {table}{where} ORDER BY id) "
                    "TO STDOUT WITH (FORMAT binary)", out)
    data = out.getbuffer()
    dtype = copy_row_dtype(with_label=False)
    body = len(data) - len(COPY_HEADER) - len(COPY_TRAILER)
    if bytes(data[:len(COPY_HEADER)]) != COPY_HEADER or body % dtype.itemsize:
        raise DemoError(f"{table}: embeddings are not all {DIMS}-element real[] without NULLs "
                        "(run 'fashion_mnist.py load --reload')")
    rows = np.frombuffer(data, dtype=dtype, count=body // dtype.itemsize, offset=len(COPY_HEADER))
    if not ((rows["nfields"] == 2).all() and (rows["ndim"] == 1).all() and (rows["dim"] == DIMS).all()
            and (rows["has_nulls"] == 0).all() and (rows["elements"]["len"] == 4).all()):
        raise DemoError(f"{table}: unexpected embeddings (run 'fashion_mnist.py load --reload')")
    return rows["id"].astype(np.int64), rows["elements"]["value"].astype(np.float32)


# --- database ------------------------------------------------------------------------------------

def connect(args):
    try:
        conn = psycopg2.connect(host=args.host, port=args.port, dbname=args.dbname, user=args.user)
    except psycopg2.OperationalError as e:
        raise DemoError(f"cannot connect to PostgreSQL at {args.host} port {args.port}, database "
                        f"{args.dbname}: {str(e).strip()}\n(start the cluster with scripts/cluster.sh start)")
    conn.autocommit = True
    return conn


def row_count(cur, table):
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
    if not cur.fetchone()[0]:
        return None
    cur.execute(f"SELECT count(*) FROM {table}")
    return cur.fetchone()[0]


def cmd_load(args):
    conn = connect(args)
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION IF NOT EXISTS hannoy")
    counts = {table: row_count(cur, table) for table in TABLES}
    if not args.reload and all(counts[t] == n for t, (_, n) in TABLES.items()):
        print(f"already loaded: items {counts['items']:,} rows, queries {counts['queries']:,} rows "
              "(--reload to load again)")
        return
    splits = {table: read_split(args.data_dir, split) for table, (split, _) in TABLES.items()}
    started = time.perf_counter()
    conn.autocommit = False
    for table, (images, labels) in splits.items():
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, label int, embedding real[])")
        # Keeps each 3 kB vector inline in its heap row: no compression or TOAST lookups per row.
        cur.execute(f"ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE PLAIN")
        copy_in(cur, table, images, labels)
    conn.commit()
    conn.autocommit = True
    cur.execute(f"ANALYZE {', '.join(TABLES)}")
    elapsed = time.perf_counter() - started
    print(f"loaded {len(splits['items'][0]):,} training images into items and "
          f"{len(splits['queries'][0]):,} test images into queries in {elapsed:.1f} s")


# --- output helpers ------------------------------------------------------------------------------

def section(title):
    print(f"\n== {title}")


def print_table(headers, rows, aligns):
    """Prints rows under headers, columns padded to their widest cell ('<' left, '>' right)."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  " + "  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, aligns, widths)).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def ascii_image(vector):
    """Renders a 28x28 image as 14 lines of 28 characters (two pixel rows per line)."""
    shades = " .:-=+*#%@"
    pixels = vector.reshape(14, 2, 28).mean(axis=1)
    return ["".join(shades[min(int(p) * len(shades) // 256, len(shades) - 1)] for p in line)
            for line in pixels]


def side_by_side(images, gap=4):
    """Lines showing titled images next to each other, without the rows blank in all of them."""
    columns = [[f"{title:<28}"] + ascii_image(vector) for title, vector in images]
    lines = [(" " * gap).join(parts) for parts in zip(*columns)]
    return [lines[0].rstrip()] + [line.rstrip() for line in lines[1:] if line.strip()]


def mb(n_bytes):
    return f"{n_bytes / 1e6:,.1f} MB"


# --- exact search and recall ---------------------------------------------------------------------

def exact_neighbours(vectors, query_vectors, k=K, candidates=50, block_rows=5000):
    """Brute-force k nearest neighbours: returns (positions, euclidean distances), each nq x k.

    A float32 matrix product ranks all vectors (in blocks, one thread per CPU: numpy's BLAS may
    be single-threaded), then the best candidates are re-ranked with exact float64 distances."""
    queries = query_vectors.astype(np.float32)
    norms = (vectors.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)

    def block_candidates(start):
        block = vectors[start:start + block_rows]
        squared = norms[start:start + len(block)][None, :] - 2 * (queries @ block.T)
        keep = min(candidates, len(block))
        return np.argpartition(squared, keep - 1, axis=1)[:, :keep] + start

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        positions = np.hstack(list(pool.map(block_candidates, range(0, len(vectors), block_rows))))
    exact = np.stack([distances(vectors, p, q) for p, q in zip(positions, query_vectors)])
    order = np.argsort(exact, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(positions, order, axis=1), np.take_along_axis(exact, order, axis=1)


def distances(vectors, positions, query_vector):
    """Euclidean distances from query_vector to vectors[positions], in float64."""
    differences = vectors[positions].astype(np.float64) - query_vector.astype(np.float64)
    return np.sqrt((differences ** 2).sum(axis=1))


def recall(found_ids, true_distances, vectors, position_of, query_vectors):
    """ann-benchmarks' recall@k: the share of returned ids within the true k-th distance + epsilon."""
    hits = 0
    for ids, truth, query in zip(found_ids, true_distances, query_vectors):
        if ids:
            found = distances(vectors, position_of[np.asarray(ids)], query)
            hits += int((found <= truth[-1] + RECALL_EPSILON).sum())
    return hits / (len(found_ids) * K)


def vector_literal(vector):
    return "{" + ",".join(str(int(v)) if v == int(v) else repr(float(v)) for v in vector) + "}"


def run_queries(cur, statement, literals):
    """Runs a prepared k-NN statement once per query: returns (ids per query, seconds per query)."""
    found, seconds = [], []
    for literal in literals:
        started = time.perf_counter()
        cur.execute(f"EXECUTE {statement}(%s)", (literal,))
        rows = cur.fetchall()
        seconds.append(time.perf_counter() - started)
        found.append([r[0] for r in rows])
    return found, np.array(seconds)


# --- demo ----------------------------------------------------------------------------------------

def build_index(cur, args, data_directory):
    section("Index build")
    options = f"m = {args.m}, ef_construction = {args.ef_construction}"
    if args.quantization != "none":
        options += f", quantization = '{args.quantization}'"
    print(f"  CREATE INDEX {INDEX_NAME} ON items USING hannoy (embedding real_l2_ops)")
    print(f"      WITH ({options});")
    cur.execute(f"DROP INDEX IF EXISTS {INDEX_NAME}")
    started = time.perf_counter()
    cur.execute(f"CREATE INDEX {INDEX_NAME} ON items USING hannoy (embedding real_l2_ops) "
                "WITH (m = %s, ef_construction = %s, quantization = %s)",
                (args.m, args.ef_construction, args.quantization))
    build_seconds = time.perf_counter() - started
    cur.execute("SELECT file, file_bytes, metric, dimensions, items, max_level "
                "FROM hannoy_index_info(%s)", (INDEX_NAME,))
    file, file_bytes, metric, dimensions, items, max_level = cur.fetchone()
    cur.execute("SELECT pg_relation_size(%s), pg_table_size('items')", (INDEX_NAME,))
    relation_bytes, heap_bytes = cur.fetchone()
    raw_bytes = 4 * dimensions
    print(f"  build time       {build_seconds:.1f} s ({items / build_seconds:,.0f} vectors/s)")
    print(f"  contents         {items:,} {metric} vectors of {dimensions} dimensions, "
          f"{max_level + 1} graph layers")
    print(f"  storage file     {os.path.join(data_directory, file)}")
    print(f"  file size        {mb(file_bytes)} = {file_bytes / items:,.0f} bytes per vector")
    print(f"    of which       {raw_bytes:,} bytes raw vector ({dimensions} x float32), "
          f"{file_bytes / items - raw_bytes:,.0f} bytes graph and overhead")
    print(f"  relation size    {relation_bytes // 1024} kB (the index's metapage; the data is in the file)")
    print(f"  table size       {mb(heap_bytes)} (items, for comparison)")


def show_plan(cur, literal):
    section("Query plan")
    print("  PREPARE knn(real[]) AS SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 10;")
    print("  EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE knn('{...}');")
    cur.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE knn(%s)", (literal,))
    plan = [r[0] for r in cur.fetchall()]
    for line in plan:
        print("    " + line)
    if not any(f"Index Scan using {INDEX_NAME}" in line for line in plan):
        raise DemoError("the k-NN query does not use the hannoy index")


def show_neighbours(cur, query_id, vectors, position_of):
    cur.execute("SELECT label FROM queries WHERE id = %s", (query_id,))
    query_label = cur.fetchone()[0]
    section(f"The 10 nearest neighbours of test image {query_id} ({CLASS_NAMES[query_label]})")
    sql = ("SELECT id, label, embedding <-> (SELECT embedding FROM queries WHERE id = {}) AS distance\n"
           "    FROM items ORDER BY distance LIMIT 10")
    print("  " + sql.format(query_id) + ";")
    cur.execute(sql.format("%s"), (query_id,))
    neighbours = cur.fetchall()
    print_table(["rank", "id", "label", "distance", "same class"],
                [[n + 1, nid, CLASS_NAMES[label], f"{distance:,.1f}", "yes" if label == query_label else "no"]
                 for n, (nid, label, distance) in enumerate(neighbours)],
                [">", ">", "<", ">", "<"])
    print()
    _, (query_vector,) = fetch_vectors(cur, "queries", [query_id])
    images = [(f"test image {query_id}", query_vector)] + [
        (f"neighbour {n + 1}: id {nid}", vectors[position_of[nid]])
        for n, (nid, _, _) in enumerate(neighbours[:2])]
    for line in side_by_side(images):
        print("  " + line)


def measure(cur, args, vectors, position_of, query_vectors, literals):
    """Prints recall@10 and latency of the index at each ef_search, and of exact search."""
    section(f"Recall@10 and latency over {len(literals)} test images (one client, EXECUTE knn)")
    started = time.perf_counter()
    _, true_distances = exact_neighbours(vectors, query_vectors)
    print(f"  true neighbours: numpy brute force over the {len(vectors):,} vectors of items, "
          f"{time.perf_counter() - started:.1f} s")
    run_queries(cur, "knn", literals)  # warm-up again after the CPU-heavy brute force
    rows = []
    for ef in args.ef_search:
        cur.execute("SET hannoy.ef_search = %s", (ef,))
        # The fastest of a few runs: other work on the machine only ever adds time.
        runs = [run_queries(cur, "knn", literals) for _ in range(args.runs)]
        found, seconds = min(runs, key=lambda run: run[1].sum())
        rows.append([ef, recall(found, true_distances, vectors, position_of, query_vectors), seconds])
    cur.execute("RESET hannoy.ef_search")

    # Exact search: the same statement, planned with index scans disabled.
    cur.execute("SET enable_indexscan = off")
    cur.execute("PREPARE knn_exact(real[]) AS SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 10")
    cur.execute("EXPLAIN (COSTS OFF) EXECUTE knn_exact(%s)", (literals[0],))
    exact_plan = [r[0].strip().lstrip("-> ") for r in cur.fetchall()]
    if any("Index" in line for line in exact_plan):
        raise DemoError("exact search unexpectedly uses an index:\n" + "\n".join(exact_plan))
    exact_count = min(args.exact_queries, len(literals))
    found, seconds = run_queries(cur, "knn_exact", literals[:exact_count])
    cur.execute("RESET enable_indexscan")
    rows.append(["exact", recall(found, true_distances[:exact_count], vectors, position_of,
                                 query_vectors[:exact_count]), seconds])

    print()
    print_table(["ef_search", "recall@10", "mean ms", "p99 ms", "queries/s"],
                [[ef, f"{r:.3f}", f"{s.mean() * 1e3:.2f}", f"{np.percentile(s, 99) * 1e3:.2f}",
                  f"{1 / s.mean():,.0f}"] for ef, r, s in rows],
                [">", ">", ">", ">", ">"])
    print()
    print(f"  exact:     enable_indexscan = off ({' -> '.join(l for l in exact_plan if ':' not in l)}), "
          f"first {exact_count} test images")
    print("  recall@10: share of the returned ids no farther than the true 10th neighbour "
          f"+ {RECALL_EPSILON}")
    print("  latency:   measured by the client, from sending EXECUTE to receiving the 10 rows")
    if args.runs > 1:
        print(f"             index scans: the fastest of {args.runs} runs")
    exact_seconds = rows[-1][2].mean()
    good_enough = [s.mean() for _, r, s in rows[:-1] if r >= 0.95]
    if good_enough:
        print(f"  at recall@10 >= 0.95 the index answers {exact_seconds / min(good_enough):,.0f}x faster "
              "than exact search")


def cmd_demo(args):
    conn = connect(args)
    cur = conn.cursor()
    counts = {table: row_count(cur, table) for table in TABLES}
    for table, (_, expected) in TABLES.items():
        if counts[table] != expected:
            found = "is missing" if counts[table] is None else f"has {counts[table]:,} rows, not {expected:,}"
            raise DemoError(f"table {table} {found}: run 'fashion_mnist.py load' first")
    if not 0 <= args.show < counts["queries"]:
        raise DemoError(f"--show: test images are numbered 0..{counts['queries'] - 1}")
    cur.execute("SELECT hannoy_kernels(), current_setting('server_version'), "
                "current_setting('data_directory')")
    kernels, server_version, data_directory = cur.fetchone()
    print(f"Fashion-MNIST: {counts['items']:,} training images in table items, {counts['queries']:,} test "
          "images in table queries,")
    print(f"each a real[] of {DIMS} pixels (28x28, 0..255), compared by euclidean distance.")
    print(f"PostgreSQL {server_version}; hannoy distance kernels: {kernels}")

    build_index(cur, args, data_directory)

    # Vectors as stored in the table: the ground truth and the query parameters.
    item_ids, vectors = fetch_vectors(cur, "items")
    position_of = np.full(item_ids.max() + 1, -1, dtype=np.int64)
    position_of[item_ids] = np.arange(len(item_ids))
    sample = np.random.default_rng(args.seed).choice(counts["queries"], replace=False,
                                                     size=min(args.queries, counts["queries"]))
    _, query_vectors = fetch_vectors(cur, "queries", sample)
    literals = [vector_literal(v) for v in query_vectors]

    # A generic plan is planned once, like an application's prepared statement, and EXPLAIN
    # shows the query vector as $1 instead of 784 numbers.
    cur.execute("SET plan_cache_mode = force_generic_plan")
    cur.execute("PREPARE knn(real[]) AS SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 10")
    run_queries(cur, "knn", literals)  # warm-up: pages the index file and the table into memory

    show_plan(cur, literals[0])
    show_neighbours(cur, args.show, vectors, position_of)
    measure(cur, args, vectors, position_of, query_vectors, literals)


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cluster_dir = os.environ.get("HANNOY_CLUSTER_DIR", "/var/tmp/hannoy-cluster")
    parser.add_argument("--host", default=cluster_dir,
                        help="server host or socket directory (default: $HANNOY_CLUSTER_DIR or %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("HANNOY_PORT", "5499")),
                        help="server port (default: $HANNOY_PORT or %(default)s)")
    parser.add_argument("--dbname", default="hannoy", help="database (default: %(default)s)")
    parser.add_argument("--user", default="postgres", help="database user (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)

    load = commands.add_parser("load", help="create and fill the tables items and queries")
    load.add_argument("--data-dir", default=DATA_DIR, help="Fashion-MNIST IDX files (default: %(default)s)")
    load.add_argument("--reload", action="store_true", help="load again even if already loaded")
    load.set_defaults(run=cmd_load)

    demo = commands.add_parser("demo", help="build the index and measure size, recall and latency")
    demo.add_argument("--m", type=positive_int, default=16, help="links per node (default: %(default)s)")
    demo.add_argument("--ef-construction", type=positive_int, default=64,
                      help="build beam width (default: %(default)s)")
    demo.add_argument("--quantization", choices=["none", "binary"], default="none",
                      help="index quantization (default: %(default)s)")
    demo.add_argument("--ef-search", type=positive_int, nargs="+", default=[10, 20, 40, 80],
                      help="search beam widths to measure (default: 10 20 40 80)")
    demo.add_argument("--queries", type=positive_int, default=200,
                      help="test images to measure with (default: %(default)s)")
    demo.add_argument("--exact-queries", type=positive_int, default=20,
                      help="how many of them to time as exact search too (default: %(default)s)")
    demo.add_argument("--runs", type=positive_int, default=3,
                      help="runs per ef_search, the fastest is reported (default: %(default)s)")
    demo.add_argument("--show", type=int, default=0,
                      help="test image whose neighbours are listed (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=1,
                      help="seed choosing the test images (default: %(default)s)")
    demo.set_defaults(run=cmd_demo)

    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows even when piped
    try:
        args.run(args)
    except DemoError as e:
        sys.exit(f"fashion_mnist.py: {e}")
    except psycopg2.Error as e:
        sys.exit(f"fashion_mnist.py: PostgreSQL error: {str(e).strip()}")


if __name__ == "__main__":
    main()
