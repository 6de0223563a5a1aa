"""PostgreSQL side of the benchmark: the throwaway cluster, connections, binary COPY of float32
rows, vector literals, and peak-memory sampling of a backend.

The cluster is the one scripts/cluster.sh manages (its directory and port come from
HANNOY_CLUSTER_DIR and HANNOY_PORT, set by scripts/bench.sh); restarts go through the same
script so the benchmark never needs to know how the server is started.
"""

import io
import os
import struct
import subprocess
import threading
import time

import numpy as np
import psycopg2

FLOAT4_OID = 700
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
ARRAY_HEADER_BYTES = 20  # ndim, has-nulls flag, element type, dimension size, lower bound
ARRAY_ELEMENT = np.dtype([("len", ">i4"), ("value", ">f4")])


class BenchError(Exception):
    """A problem the user can fix; printed without a traceback."""


class Cluster:
    """The benchmark's cluster: connect, restart, settings."""

    def __init__(self, root, cluster_dir, port, dbname="hannoy"):
        self.root, self.cluster_dir, self.port, self.dbname = root, cluster_dir, port, dbname

    def connect(self, autocommit=True):
        try:
            conn = psycopg2.connect(host=self.cluster_dir, port=self.port, dbname=self.dbname, user="postgres")
        except psycopg2.OperationalError as e:
            raise BenchError(f"cannot connect to the benchmark cluster in {self.cluster_dir} port {self.port}: "
                             f"{str(e).strip()}")
        conn.autocommit = autocommit
        return conn

    def _cluster_sh(self, command):
        env = dict(os.environ, HANNOY_CLUSTER_DIR=self.cluster_dir, HANNOY_PORT=str(self.port))
        result = subprocess.run([os.path.join(self.root, "scripts", "cluster.sh"), command], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise BenchError(f"scripts/cluster.sh {command} failed:\n{result.stdout}")

    def stop(self):
        self._cluster_sh("stop")

    def start(self):
        self._cluster_sh("start")

    def restart(self):
        self.stop()
        self.start()


def drop_page_cache():
    """Empties the OS page cache (needs root); returns None, or why it could not."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return None
    except OSError as e:
        return f"cannot drop the page cache: {e.strerror} (run as root)"


def server_settings(cur, names):
    cur.execute("SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)", (list(names),))
    values = {}
    for name, setting, unit in cur.fetchall():
        if unit in ("8kB", "kB", "MB") and setting.isdigit():
            kilobytes = int(setting) * {"8kB": 8, "kB": 1, "MB": 1024}[unit]
            setting = f"{kilobytes // 1048576}GB" if kilobytes % 1048576 == 0 else (
                f"{kilobytes // 1024}MB" if kilobytes % 1024 == 0 else f"{kilobytes}kB")
        values[name] = setting
    return {name: values.get(name) for name in names}


# --- rows in and out -----------------------------------------------------------------------------

def _copy_dtype(dims):
    return np.dtype([("nfields", ">i2"), ("id_len", ">i4"), ("id", ">i4"), ("label_len", ">i4"), ("label", ">i4"),
                     ("array_len", ">i4"), ("ndim", ">i4"), ("has_nulls", ">i4"), ("elem_type", ">i4"),
                     ("dim", ">i4"), ("lbound", ">i4"), ("elements", ARRAY_ELEMENT, (dims,))])


def copy_rows(cur, table, ids, labels, vectors, batch_rows=5000):
    """Appends (id, label, embedding) rows to table with binary COPY, in batches: numpy lays out
    whole batches at once, far faster than formatting every number as text."""
    dims = vectors.shape[1]
    dtype = _copy_dtype(dims)
    for start in range(0, len(vectors), batch_rows):
        part = slice(start, start + batch_rows)
        rows = np.zeros(len(vectors[part]), dtype=dtype)
        rows["nfields"] = 3
        rows["id_len"] = rows["label_len"] = 4
        rows["id"] = ids[part]
        rows["label"] = labels[part]
        rows["array_len"] = ARRAY_HEADER_BYTES + dims * ARRAY_ELEMENT.itemsize
        rows["ndim"] = 1
        rows["elem_type"] = FLOAT4_OID
        rows["dim"] = dims
        rows["lbound"] = 1
        rows["elements"]["len"] = 4
        rows["elements"]["value"] = vectors[part]
        payload = io.BytesIO(COPY_HEADER + rows.tobytes() + COPY_TRAILER)
        cur.copy_expert(f"COPY {table} (id, label, embedding) FROM STDIN WITH (FORMAT binary)", payload)


def create_items_table(cur, table="items"):
    cur.execute(f"DROP TABLE IF EXISTS {table}")
    cur.execute(f"CREATE TABLE {table} (id int, label int, embedding real[])")
    # Keeps each vector inline in its heap row. Also what PostgreSQL's planning of parallel
    # index builds needs: with TOASTed vectors the heap looks tiny and no worker is planned.
    cur.execute(f"ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE PLAIN")


def vector_literal(vector):
    """A real[] literal that reads back as exactly the same float32 values: integral values
    (pixels) print as integers, others as the shortest decimal that round-trips a float32."""
    if np.array_equal(vector, np.rint(vector)) and np.abs(vector).max(initial=0) < 1e7:
        return "{" + ",".join(map(str, vector.astype(np.int64).tolist())) + "}"
    return "{" + ",".join(repr(x) for x in vector.astype(np.float32)) + "}"


# --- memory of a backend -------------------------------------------------------------------------

MEMORY_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")


def process_memory(pid):
    """Memory figures of a process from /proc/<pid>/status, in bytes ({} once it has gone)."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in MEMORY_FIELDS:
                    values[name] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values


class MemorySampler:
    """Samples /proc/<pid>/status of a backend while it works (every 20 ms) and keeps the peaks.

    peak_private_bytes (RssAnon) is the memory the backend allocated for itself: what a build
    adds to the server's footprint. VmHWM (peak resident set, reset first through clear_refs
    where permitted) also counts shared_buffers pages and mapped file pages the backend touched,
    which are page cache and shared memory rather than memory it owns."""

    def __init__(self, pid, interval=0.02):
        self.pid, self.interval = pid, interval
        self.peaks = {}
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self):
        return process_memory(self.pid)

    def _run(self):
        while not self._stop.is_set():
            for name, value in self._read().items():
                self.peaks[name] = max(self.peaks.get(name, 0), value)
            self._stop.wait(self.interval)

    def __enter__(self):
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5\n")  # resets VmHWM to the current resident set
            self.hwm_reset = True
        except OSError:
            pass
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        final = self._read()
        if "VmHWM" in final:
            self.peaks["VmHWM"] = max(self.peaks.get("VmHWM", 0), final["VmHWM"])

    def result(self):
        return {"peak_private_bytes": self.peaks.get("RssAnon"),
                "peak_rss_bytes": self.peaks.get("VmHWM") if self.hwm_reset else None,
                "peak_mapped_file_bytes": self.peaks.get("RssFile"),
                "peak_shared_memory_bytes": self.peaks.get("RssShmem")}


def backend_cpu_seconds(pid):
    """User + system CPU time a process has used so far (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(predicate, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# --- a memory cgroup for the server --------------------------------------------------------------

class MemoryCgroup:
    """A memory cgroup (v1 or v2) to run the server's backends with less memory than its data.

    Page cache pages are charged to the cgroup of the process that first reads them, so a
    backend in a cgroup whose limit is below the index file's size keeps only part of the file
    in memory, as on a machine with that much RAM; the rest of the machine is unaffected."""

    NAME = "hannoy-bench"

    def __init__(self, path, version):
        self.path, self.version = path, version

    @classmethod
    def create(cls):
        """(cgroup, None), or (None, why the machine has no usable memory cgroup)."""
        v1 = "/sys/fs/cgroup/memory"
        try:
            if os.path.exists(os.path.join(v1, "memory.limit_in_bytes")):
                path, version = os.path.join(v1, cls.NAME), 1
            else:
                with open("/sys/fs/cgroup/cgroup.controllers") as f:
                    if "memory" not in f.read().split():
                        return None, "the cgroup v2 hierarchy has no memory controller"
                with open("/sys/fs/cgroup/cgroup.subtree_control") as f:
                    enabled = "memory" in f.read().split()
                if not enabled:
                    with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as f:
                        f.write("+memory\n")
                path, version = os.path.join("/sys/fs/cgroup", cls.NAME), 2
            if os.path.isdir(path):
                cls(path, version).remove()
            os.mkdir(path)
        except OSError as e:
            return None, f"cannot create a memory cgroup: {e.strerror} ({e.filename}); run as root"
        return cls(path, version), None

    def _write(self, name, value):
        with open(os.path.join(self.path, name), "w") as f:
            f.write(f"{value}\n")

    def _read(self, name):
        try:
            with open(os.path.join(self.path, name)) as f:
                return f.read()
        except OSError:
            return None

    def set_limit(self, limit_bytes):
        self._write("memory.limit_in_bytes" if self.version == 1 else "memory.max", int(limit_bytes))

    def add(self, pid):
        """Moves a process in; the processes it forks afterwards start in the cgroup too."""
        self._write("cgroup.procs", pid)

    def contains(self, pid):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                return any(line.rstrip().endswith("/" + self.NAME) for line in f)
        except OSError:
            return False

    def peak_bytes(self):
        value = self._read("memory.max_usage_in_bytes" if self.version == 1 else "memory.peak")
        return int(value) if value else None

    def oom_kills(self):
        text = self._read("memory.oom_control" if self.version == 1 else "memory.events") or ""
        for line in text.splitlines():
            name, _, count = line.partition(" ")
            if name == "oom_kill":
                return int(count)
        return None

    def remove(self):
        """Moves any process left back to the root cgroup and deletes the cgroup."""
        root = os.path.dirname(self.path)
        for pid in (self._read("cgroup.procs") or "").split():
            try:
                with open(os.path.join(root, "cgroup.procs"), "w") as f:
                    f.write(pid + "\n")
            except OSError:
                pass  # exited meanwhile
        wait_for(lambda: not (self._read("cgroup.procs") or "").split(), timeout=5)
        try:
            os.rmdir(self.path)
        except OSError:
            pass


def postmaster_pid(data_directory):
    with open(os.path.join(data_directory, "postmaster.pid")) as f:
        return int(f.readline())
