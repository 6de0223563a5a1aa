"""Data sets of the benchmark, as float32 matrices with integer labels.

A data set provides the rows of the indexed table (ids 0..n-1), the query vectors with their
labels (the filter column), and on demand extra rows drawn the same way (for the insert and
COPY measurements). Everything is deterministic: the same arguments give the same numbers,
so the ground truth computed from them can be cached.
"""

import os
import sys
from dataclasses import dataclass, field

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _fashion_mnist_reader():
    """The IDX reader of scripts/fashion_mnist.py (the demo): one parser for both."""
    scripts = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts")
    sys.path.insert(0, os.path.normpath(scripts))
    try:
        from fashion_mnist import read_split
    finally:
        sys.path.pop(0)
    return read_split


@dataclass
class Dataset:
    name: str                   # short name used in file names, e.g. "fashion-mnist"
    description: str            # one line for reports
    vectors: np.ndarray         # n x d float32, the table's rows; row i has id i
    labels: np.ndarray          # n int32, the filter column
    queries: np.ndarray         # q x d float32
    query_labels: np.ndarray    # q int32
    label_count: int            # labels are 0..label_count-1
    # Draws `count` new rows like the table's (vectors, labels) from a seeded stream.
    extra_rows: object = field(repr=False, default=None)

    @property
    def dims(self):
        return self.vectors.shape[1]

    def params(self):
        """What identifies the data set in the JSON results."""
        return {"name": self.name, "description": self.description, "rows": int(len(self.vectors)),
                "dimensions": int(self.dims), "queries": int(len(self.queries)),
                "labels": int(self.label_count)}


def fashion_mnist(data_dir=FASHION_MNIST_DIR, noise_sigma=16.0, seed=1):
    """ann-benchmarks' fashion-mnist-784-euclidean: 60,000 training images as rows, the 10,000
    test images as queries, pixel values 0..255 as float32, class labels 0..9.

    Extra rows (for inserts) are random training images with Gaussian pixel noise of
    `noise_sigma`, rounded and clipped to 0..255: new points near existing ones, as an
    application adding similar images would insert."""
    read_split = _fashion_mnist_reader()
    train_images, train_labels = read_split(data_dir, "train")
    test_images, test_labels = read_split(data_dir, "t10k")
    train = train_images.astype(np.float32)

    def extra_rows(count, stream):
        rng = np.random.default_rng([seed, stream])
        sources = rng.integers(len(train), size=count)
        noisy = train[sources] + rng.normal(0.0, noise_sigma, size=(count, train.shape[1]))
        return np.clip(np.rint(noisy), 0, 255).astype(np.float32), train_labels[sources].astype(np.int32)

    return Dataset(name="fashion-mnist",
                   description="Fashion-MNIST 60,000 x 784 (ann-benchmarks' fashion-mnist-784-euclidean)",
                   vectors=train, labels=train_labels.astype(np.int32),
                   queries=test_images.astype(np.float32), query_labels=test_labels.astype(np.int32),
                   label_count=10, extra_rows=extra_rows)


def gaussian_mixture(rows, dims, clusters=1000, sigma=0.6, queries=2000, labels=10, seed=1):
    """A seeded Gaussian mixture for scale tests: cluster centres drawn from N(0, 1) per
    coordinate, each point a random centre plus N(0, sigma^2) noise; queries (and extra rows)
    are further points of the same mixture. A point's label is its cluster number modulo
    `labels`, so each label holds about 1/labels of the rows and of a query's neighbours."""
    centres = np.random.default_rng([seed, 0]).standard_normal((clusters, dims), dtype=np.float32)

    def draw(count, stream):
        rng = np.random.default_rng([seed, stream])
        assigned = rng.integers(clusters, size=count)
        points = np.empty((count, dims), dtype=np.float32)
        # In chunks: a million rows of noise in float64 would need gigabytes at once.
        for start in range(0, count, 100_000):
            part = slice(start, min(start + 100_000, count))
            noise = rng.standard_normal((part.stop - part.start, dims), dtype=np.float32)
            points[part] = centres[assigned[part]] + np.float32(sigma) * noise
        return points, (assigned % labels).astype(np.int32)

    vectors, row_labels = draw(rows, 1)
    query_vectors, query_labels = draw(queries, 2)
    return Dataset(name=f"gauss-{_short(rows)}x{dims}",
                   description=f"Gaussian mixture {rows:,} x {dims}, {clusters:,} clusters, sigma {sigma}, "
                               f"seed {seed}",
                   vectors=vectors, labels=row_labels, queries=query_vectors, query_labels=query_labels,
                   label_count=labels, extra_rows=lambda count, stream: draw(count, 100 + stream))


def _short(n):
    """1000000 -> '1m', 50000 -> '50k' (for file names)."""
    for unit, size in (("m", 1_000_000), ("k", 1_000)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)
