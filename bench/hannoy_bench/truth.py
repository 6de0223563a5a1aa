"""Exact nearest neighbours (the ground truth) and ann-benchmarks' recall.

Brute force with numpy, in two passes: float32 scores rank every row and keep a margin of
candidates per query, then exact float64 distances re-rank the candidates. The first pass
uses np.einsum rather than a matrix product: Debian's numpy links the reference BLAS, about
five times slower here than einsum's own SIMD loop. Results are cached in bench/cache/ under
a hash of the inputs, so a data set's truth is computed once.

A Truth holds, per query, the `depth` nearest rows (ids and euclidean distances), closest
first. A depth larger than k lets the truth follow updates without a new brute force: rows
inserted later are merged in, deleted rows are dropped, and the k nearest live rows are still
exact as long as k of the original depth survive (checked).
"""

import hashlib
import os
from dataclasses import dataclass

import numpy as np

K = 10
# ann-benchmarks' tolerance: a returned row counts when its distance is at most the true k-th
# distance plus this.
RECALL_EPSILON = 1e-3
# Extra float32 candidates re-ranked exactly: float32 scores of 784 pixel products can be off by
# a few units, enough to swap near-ties but not to push a true neighbour 32 places down.
RANK_MARGIN = 32


@dataclass
class Truth:
    ids: np.ndarray     # q x depth int64, -1 where fewer rows exist
    dists: np.ndarray   # q x depth float64, inf where fewer rows exist

    def kth_distance(self, k=K):
        if not np.isfinite(self.dists[:, k - 1]).all():
            raise ValueError(f"ground truth holds fewer than {k} live rows for some queries")
        return self.dists[:, k - 1]

    def subset(self, rows):
        return Truth(self.ids[rows], self.dists[rows])


def _hash(*arrays, extra=""):
    digest = hashlib.sha256(extra.encode())
    for a in arrays:
        digest.update(str((a.dtype, a.shape)).encode())
        digest.update(np.ascontiguousarray(a).data)
    return digest.hexdigest()[:20]


def exact_distances(vectors, ids, query):
    """Euclidean distances in float64 from one query to vectors[ids]."""
    differences = vectors[ids].astype(np.float64) - query.astype(np.float64)
    return np.sqrt(np.einsum("ij,ij->i", differences, differences))


def _candidates(vectors, queries, keep, row_block=16384):
    """Per query, the positions of the `keep` rows with the smallest float32 scores."""
    norms = np.einsum("ij,ij->i", vectors, vectors)
    best_scores = np.full((len(queries), 0), np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), row_block):
        block = vectors[start:start + row_block]
        # |q - x|^2 - |q|^2: the query's own norm does not change its ranking.
        scores = norms[start:start + len(block)][None, :] - 2 * np.einsum("qd,rd->qr", queries, block)
        scores = np.concatenate([best_scores, scores], axis=1)
        rows = np.concatenate([best_rows, np.broadcast_to(np.arange(start, start + len(block)),
                                                          (len(queries), len(block)))], axis=1)
        if scores.shape[1] > keep:
            part = np.argpartition(scores, keep - 1, axis=1)[:, :keep]
            scores = np.take_along_axis(scores, part, axis=1)
            rows = np.take_along_axis(rows, part, axis=1)
        best_scores, best_rows = scores, rows
    return best_rows


def _compute(vectors, queries, depth, query_block=512, progress=None):
    keep = min(depth + RANK_MARGIN, len(vectors))
    ids = np.full((len(queries), depth), -1, dtype=np.int64)
    dists = np.full((len(queries), depth), np.inf)
    for start in range(0, len(queries), query_block):
        chunk = queries[start:start + query_block]
        rows = _candidates(vectors, chunk, keep)
        for i, (query, candidates) in enumerate(zip(chunk, rows)):
            exact = exact_distances(vectors, candidates, query)
            order = np.argsort(exact, kind="stable")[:depth]
            ids[start + i, :len(order)] = candidates[order]
            dists[start + i, :len(order)] = exact[order]
        if progress:
            progress(min(start + query_block, len(queries)), len(queries))
    return ids, dists


def nearest(vectors, queries, depth=K, row_ids=None, cache_dir=None, label="", progress=None):
    """The `depth` nearest rows of `vectors` to each query; rows are named by `row_ids`
    (default: their positions). Cached in cache_dir when given."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    path = None
    if cache_dir:
        key = _hash(vectors, queries, *(() if row_ids is None else (row_ids,)), extra=f"depth={depth}")
        path = os.path.join(cache_dir, f"truth-{label or 'data'}-{key}.npz")
        if os.path.exists(path):
            with np.load(path) as cached:
                return Truth(cached["ids"], cached["dists"])
    positions, dists = _compute(vectors, queries, depth, progress=progress)
    ids = positions if row_ids is None else np.where(positions >= 0, np.asarray(row_ids)[positions], -1)
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        temporary = path + ".tmp.npz"
        np.savez(temporary, ids=ids, dists=dists)
        os.replace(temporary, path)
    return Truth(ids, dists)


def merged(a, b):
    """The union of two truths over disjoint rows, cut to a's depth."""
    ids = np.concatenate([a.ids, b.ids], axis=1)
    dists = np.concatenate([a.dists, b.dists], axis=1)
    order = np.argsort(dists, axis=1, kind="stable")[:, :a.ids.shape[1]]
    return Truth(np.take_along_axis(ids, order, axis=1), np.take_along_axis(dists, order, axis=1))


def without(truth, deleted_ids):
    """The truth with deleted rows removed (their slots move to the end as -1 / inf)."""
    gone = np.isin(truth.ids, np.asarray(deleted_ids))
    dists = np.where(gone, np.inf, truth.dists)
    ids = np.where(gone, -1, truth.ids)
    order = np.argsort(dists, axis=1, kind="stable")
    result = Truth(np.take_along_axis(ids, order, axis=1), np.take_along_axis(dists, order, axis=1))
    result.kth_distance()  # raises if a query lost too many of its neighbours
    return result


def filtered_nearest(vectors, labels, queries, wanted_labels, k=K, cache_dir=None, label=""):
    """Per query, the k nearest rows whose label is that query's wanted label."""
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    dists = np.full((len(queries), k), np.inf)
    for value in np.unique(wanted_labels):
        rows = np.flatnonzero(labels == value)
        asking = np.flatnonzero(wanted_labels == value)
        part = nearest(vectors[rows], queries[asking], depth=k, row_ids=rows, cache_dir=cache_dir,
                       label=f"{label}-label{value}")
        ids[asking], dists[asking] = part.ids, part.dists
    return Truth(ids, dists)


def recall(found, kth_distances, vectors, queries, k=K):
    """ann-benchmarks' recall@k: the share of the k expected rows that were returned, where a
    returned row counts when its distance is within the true k-th distance + RECALL_EPSILON.
    `found` holds the ids returned per query (row i of `vectors` has id i)."""
    hits = 0
    for ids, kth, query in zip(found, kth_distances, queries):
        if len(ids):
            distances = exact_distances(vectors, np.asarray(ids[:k], dtype=np.int64), query)
            hits += int((distances <= kth + RECALL_EPSILON).sum())
    return hits / (len(found) * k)
