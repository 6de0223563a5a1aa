/*
 * store_graph.hpp: HNSW operations on an index file: bulk loading, incremental insertion
 * and the resumable search behind index scans.
 *
 * Everything here runs inside one LMDB transaction per call and keeps no pointer into the
 * map across calls. Incremental insertion happens under the single LMDB writer: it re-reads
 * every neighbour list it changes, so concurrent writers (serialised by LMDB) never lose
 * each other's edges.
 */
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "../distance/metric.hpp"
#include "../store/index_store.hpp"
#include "../store/residency.hpp"
#include "hnsw.hpp"

namespace hannoy
{

/// How an index's graph is built and walked: over the full vectors, or (binary
/// quantization) over one sign bit per dimension, compared by hamming distance.
struct Traversal {
	Space space; ///< distances between traversal vectors
	bool codes;  ///< walk binary codes instead of full vectors

	/// How searches walk the graph.
	static Traversal of(const IndexMeta &meta)
	{
		if (meta.params.quantization == Quantization::Binary)
			return Traversal{binary_code_space(meta.params.dims), true};
		return Traversal{Space(meta.params.metric, meta.params.dims), false};
	}
	/// How the graph is built: as searches walk it, except that inner product graphs are
	/// built in the augmented euclidean space (see Space::augmented_inner_product).
	static Traversal for_construction(const IndexMeta &meta)
	{
		if (meta.params.metric == Metric::InnerProduct && meta.params.quantization == Quantization::None)
			return Traversal{Space::augmented_inner_product(meta.params.dims, meta.max_norm), false};
		return of(meta);
	}
};

/// The graph interface of hnsw.hpp over an index file, for one transaction.
class StoreGraph
{
public:
	StoreGraph(StoreReader &reader, const Traversal &traversal)
		: reader_(reader), space_(traversal.space), codes_(traversal.codes)
	{
	}

	/// The traversal vector of an item (its code when quantized), or null.
	VectorRef vector(uint32_t id)
	{
		return codes_ ? VectorRef{reader_.code(id), Encoding::Raw} : reader_.vector(id);
	}
	bool distance_to(VectorRef query, uint32_t id, float *out)
	{
		VectorRef v = vector(id);
		if (!v)
			return false;
		*out = space_.distance(query, v);
		return true;
	}
	float distance_between(uint32_t a, uint32_t b)
	{
		VectorRef va = vector(a);
		VectorRef vb = vector(b);
		if (!va || !vb)
			throw Error(ErrorCode::Corrupted, "hannoy index links an item without a vector", "",
						"REINDEX the index.");
		return space_.distance(va, vb);
	}
	/// Appends the neighbours of (id, layer); with read_ahead, also asks for their vectors,
	/// which the search reads next, all at once (see residency.hpp).
	void neighbors(uint32_t id, uint8_t layer, std::vector<uint32_t> &out)
	{
		size_t before = out.size();
		reader_.links(id, layer, out);
		if (!read_ahead_)
			return;
		for (size_t i = before; i < out.size(); i++)
			if (VectorRef v = vector(out[i]))
				read_ahead(v.data, space_.bytes(v.encoding));
	}
	void prefetch(uint32_t id)
	{
		if (VectorRef v = vector(id))
			prefetch_to_cache(v.data, space_.bytes(v.encoding));
	}
	void set_read_ahead(bool on) { read_ahead_ = on; }
	bool zero_is_duplicate() const { return space_.zero_is_duplicate(); }

private:
	StoreReader &reader_;
	const Space space_;
	bool codes_;
	bool read_ahead_ = false;
};

/// Appends the items of a bulk build to a fresh index file, in large transactions, without
/// linking them (BuildGraph does that afterwards).
///
/// Several loaders (one per participant of a parallel build, each in its own process) can
/// fill one file: they then share a counter of vector blocks, and each numbers its items
/// from the blocks it reserves. Slots of a participant's last, partial block stay holes: ids
/// without an item, like those of purged items.
class BulkLoader
{
public:
	/// `shared_blocks`: the block counter shared by the participants (nullptr: sole loader,
	/// ids are consecutive from 0). It is updated with atomic operations.
	explicit BulkLoader(IndexStore &store, uint32_t *shared_blocks = nullptr,
						size_t flush_bytes = kDefaultFlushBytes);

	/// Buffers one item whose stored vector is `vector`; returns its id.
	uint32_t add(HeapTid tid, const uint8_t *vector);
	/// Writes the buffered items when the buffer is large; call often (between heap tuples).
	void maybe_flush();
	/// Writes everything, including the last partial block.
	void finish();
	/// Items added by this loader.
	uint32_t added() const { return added_; }
	/// Blocks a sole loader has numbered (its items have ids below blocks * per block).
	uint32_t blocks() const { return next_block_; }
	/// Bound on buffered vector bytes before they are written. Small batches load faster than
	/// large ones: the buffers and LMDB's dirty pages of one batch are reused by the next while
	/// still mapped and cached, where 64 MB batches took fresh pages (page faults) every time
	/// and loaded Fashion-MNIST's 188 MB of vectors in 0.8 s instead of 0.1 s.
	static constexpr size_t kDefaultFlushBytes = size_t(4) << 20;

private:
	void flush(bool final);
	void start_block();

	IndexStore &store_;
	uint32_t *shared_blocks_;
	size_t flush_bytes_;
	uint32_t vector_bytes_ = 0;
	uint32_t per_block_ = 0;
	uint32_t m_;
	uint64_t level_seed_;
	uint32_t added_ = 0;
	uint32_t next_block_ = 0; ///< sole loader: the next block number
	uint32_t block_number_ = 0;
	uint32_t in_block_ = 0;
	std::vector<uint8_t> block_;
	std::vector<std::pair<uint32_t, std::vector<uint8_t>>> full_blocks_;
	std::vector<std::vector<uint8_t>> spare_blocks_; ///< written blocks' buffers, for reuse
	std::vector<std::pair<HeapTid, uint32_t>> pending_;
};

/// An item to insert: its heap row and its stored-form vector.
struct NewItem {
	HeapTid tid;
	const uint8_t *vector;
};

/// Inserts make every live item reachable again (as VACUUM's cleanup does) in the batch whose
/// new item ids cross a multiple of reachability_check_interval(): about every
/// 1/kReachabilityCheckShare of the index, whichever process inserts them.
constexpr uint32_t kReachabilityCheckShare = 16;
constexpr uint32_t kMinReachabilityCheckInterval = 256;
/// The live items divided by kReachabilityCheckShare, rounded down to a power of two, at least
/// kMinReachabilityCheckInterval.
uint32_t reachability_check_interval(uint64_t live_items);

/// Links new items into an existing graph.
class Inserter
{
public:
	explicit Inserter(IndexStore &store);

	/// Inserts the items, all of `dims` dimensions, in one write transaction. TIDs already
	/// indexed are skipped (inserts are idempotent); a vector identical to an indexed one joins
	/// that item instead of becoming a new node. The first vector of an index built empty fixes
	/// its dimension; any other dimension is an error. Returns how many TIDs were added.
	size_t insert(const std::vector<NewItem> &items, uint32_t dims);

	/// Whether the last insert() checked that every live item is reachable (and relinked
	/// those that were not), and how many links that added.
	bool checked_reachability() const { return checked_reachability_; }
	uint32_t relinked() const { return relinked_; }

private:
	void link(StoreWriter &writer, IndexMeta &meta, const Bitmap &tombstones, uint32_t id, uint8_t level,
			  VectorRef vector);
	bool add_reverse_link(StoreWriter &writer, StoreGraph &graph, const Bitmap &tombstones, uint32_t target,
						  uint8_t layer, uint32_t id, float dist);
	void force_reverse_link(StoreWriter &writer, StoreGraph &graph, uint32_t target, uint32_t id);

	IndexStore &store_;
	Traversal traversal_{Space(Metric::L2, 0), false};
	SearchScratch scratch_;
	std::vector<Candidate> entry_points_, found_, selected_, prune_;
	std::vector<uint32_t> ids_;
	/// Items a pruned list dropped in this batch: the batch relinks those left without any
	/// incoming link.
	std::vector<uint32_t> dropped_;
	bool checked_reachability_ = false;
	uint32_t relinked_ = 0;
};

/// Live items that cannot be reached from the entry point (read transaction only).
uint32_t count_unreachable(IndexStore &store);
/// Links every live item that cannot be reached from the entry point (see
/// connect_unreachable in hnsw.hpp), in one write transaction, and restarts the count of
/// items purged since the last walk. Returns the links added.
uint32_t repair_reachability(IndexStore &store);

/// Hooks a long maintenance task calls around each of its write transactions, so the caller
/// can take its own lock first and check for cancellation between steps.
class WriteGate
{
public:
	virtual ~WriteGate() = default;
	/// Before each write transaction (e.g. take the writer lock).
	virtual void before_write() {}
	/// After each write transaction committed (e.g. release the lock).
	virtual void after_write() {}
	/// Between steps, outside any transaction (cancellation, throttling).
	virtual void between_steps() {}
};

/// What the repair of a graph around deleted items did.
struct RepairStats {
	uint64_t lists_read = 0;       ///< in-link records of deleted items read
	uint64_t lists_rewritten = 0;  ///< lists that pointed at deleted items, rebuilt
	uint64_t items_purged = 0;     ///< deleted items whose links were removed for good
	uint64_t orphans_relinked = 0; ///< live items left without incoming links, linked again
	bool entry_point_replaced = false;
	uint64_t entry_point_records_read = 0; ///< link and item records read to choose the new one
	/// Items purged since the last full reachability walk reached 1/kReachabilityCheckShare
	/// of the live items: the caller should walk (repair_reachability).
	bool walk_due = false;
};

/// Repairs the graph around tombstoned items and then purges them (FreshDiskANN's delete
/// consolidation, on HNSW layers). The entry point is replaced first if it was deleted. The
/// lists that link a deleted item are found through its in-links, so the work is proportional
/// to what was deleted: every such list keeps all its live neighbours, and the deleted ones'
/// places go to their own live neighbours (those the pruning heuristic keeps first, then the
/// closest) up to the list's former length. A live item whose last incoming link came from a
/// deleted one is linked again at once. Cycles of items that only link each other are left to
/// the full walk, due every 1/kReachabilityCheckShare of the index purged. Work is done in
/// chunks, each in its own write transaction wrapped by `gate`.
RepairStats repair_deleted(IndexStore &store, WriteGate &gate);

/// Links each live item of `candidates` that has no incoming layer-0 link from a live item
/// (`dead`: items not to count or link from) from its nearest node reachable from the entry
/// point: appended when that node's list has room, else in place of the neighbour with the
/// most incoming links. Returns the items linked.
uint32_t link_orphans(StoreWriter &writer, const IndexMeta &meta, const Bitmap &dead,
					  std::vector<uint32_t> candidates);

/// Removes heap TIDs from the index in one write transaction. An item left without TIDs is
/// deleted and tombstoned: scans stop returning it at once, while its links stay usable for
/// traversal until the graph is repaired around it. Returns the number of items deleted.
size_t delete_tids(IndexStore &store, const std::vector<HeapTid> &tids);

/// A layer-0 search that can be resumed to produce more results in order, for index scans.
/// Each call to next() runs in its own read transaction; between calls nothing points into
/// the file, and items deleted meanwhile simply stop appearing.
class ScanSearch
{
public:
	/// `query` is the query's traversal vector (copied). When `strict`, results never come
	/// closer than one given before (late finds are dropped); otherwise each batch is only
	/// sorted within itself.
	ScanSearch(const Traversal &traversal, const uint8_t *query, uint32_t ef, bool strict = true);

	/// Appends the next results to `out`, closest first. Widens the beam (doubling ef) as
	/// often as needed. Returns false when the reachable graph is exhausted.
	template <typename Filter>
	bool next(StoreReader &reader, const Filter &accept, std::vector<Candidate> &out);

	/// Nodes whose distance was computed so far.
	uint64_t visited() const { return visited_count_; }

	/// Adds `id` to the first round's candidates, next to where the descent from the entry
	/// point lands (no effect once the search has started).
	void add_seed(uint32_t id)
	{
		if (!started_)
			seeds_.push_back(id);
	}

private:
	template <typename Filter> void expand(StoreGraph &graph, const Filter &accept);
	void push_result(const Candidate &c);
	VectorRef query() const { return VectorRef{query_.data(), Encoding::Raw}; }

	Traversal traversal_;
	AlignedBytes query_;
	uint32_t ef_;
	bool strict_;
	bool started_ = false;
	bool exhausted_ = false;
	uint64_t visited_count_ = 0;
	Pooled<VisitedSet> visited_;
	Pooled<VisitedSet> emitted_;
	std::vector<Candidate> candidates_; ///< min-heap of nodes to expand
	std::vector<Candidate> results_;    ///< max-heap: best ef_ accepted nodes of this round
	std::vector<Candidate> accepted_;   ///< every accepted node found so far
	std::vector<Candidate> deferred_;   ///< found but outside the beam; revisited when it widens
	std::vector<uint32_t> neighbors_;
	std::vector<Candidate> round_;
	std::vector<uint32_t> seeds_;
	bool any_emitted_ = false;
	float last_emitted_ = 0.0f;
};

template <typename Filter>
void
ScanSearch::expand(StoreGraph &graph, const Filter &accept)
{
	while (!candidates_.empty()) {
		Candidate current = candidates_.front();
		if (results_.size() >= ef_ && current.dist > results_.front().dist)
			break;
		std::pop_heap(candidates_.begin(), candidates_.end(), ClosestOnTop());
		candidates_.pop_back();
		neighbors_.clear();
		graph.neighbors(current.id, 0, neighbors_);
		keep_unvisited_and_prefetch(graph, *visited_, neighbors_);
		for (uint32_t id : neighbors_) {
			float d;
			if (!graph.distance_to(query(), id, &d))
				continue;
			visited_count_++;
			Candidate c{d, id};
			bool accepted = accept(id);
			if (accepted)
				accepted_.push_back(c);
			if (results_.size() < ef_ || d < results_.front().dist) {
				candidates_.push_back(c);
				std::push_heap(candidates_.begin(), candidates_.end(), ClosestOnTop());
				if (accepted)
					push_result(c);
			} else {
				deferred_.push_back(c);
			}
		}
	}
}

template <typename Filter>
bool
ScanSearch::next(StoreReader &reader, const Filter &accept, std::vector<Candidate> &out)
{
	StoreGraph graph(reader, traversal_);
	ColdReads &cold = reader.store().cold_reads();
	while (!exhausted_) {
		ColdReads::Step step(cold);
		if (!started_) {
			started_ = true;
			IndexMeta meta = reader.meta();
			if (meta.entry_point == kNoItem) {
				exhausted_ = true;
				break;
			}
			visited_->reset(meta.next_item);
			emitted_->reset(meta.next_item);
			VectorRef entry_vector = graph.vector(meta.entry_point);
			if (!entry_vector)
				throw Error(ErrorCode::Corrupted, "hannoy index entry point has no vector", "",
							"REINDEX the index.");
			cold.probe(entry_vector.data);
			graph.set_read_ahead(cold.active());
			float d = 0.0f;
			graph.distance_to(query(), meta.entry_point, &d);
			round_.assign(1, Candidate{d, meta.entry_point});
			{
				Pooled<SearchScratch> scratch;
				std::vector<Candidate> buffer;
				descend(graph, query(), round_, meta.max_level, 0, kUpperLayerBeam, *scratch, meta.next_item,
						buffer);
			}
			for (uint32_t id : seeds_) {
				float seed_dist;
				if (id < meta.next_item && graph.distance_to(query(), id, &seed_dist))
					round_.push_back(Candidate{seed_dist, id});
			}
			for (const Candidate &c : round_) {
				if (visited_->test_and_set(c.id))
					continue;
				visited_count_++;
				candidates_.push_back(c);
				std::push_heap(candidates_.begin(), candidates_.end(), ClosestOnTop());
				if (accept(c.id)) {
					accepted_.push_back(c);
					push_result(c);
				}
			}
		} else {
			graph.set_read_ahead(cold.active());
			/* Widen the beam: the best 2*ef accepted nodes so far seed the new round, and
			 * everything left outside the old beam becomes expandable again. */
			ef_ = ef_ > (1u << 30) ? ef_ : ef_ * 2;
			for (const Candidate &c : deferred_) {
				candidates_.push_back(c);
				std::push_heap(candidates_.begin(), candidates_.end(), ClosestOnTop());
			}
			deferred_.clear();
			results_ = accepted_;
			if (results_.size() > ef_) {
				std::nth_element(results_.begin(), results_.begin() + ef_, results_.end(), closer);
				results_.resize(ef_);
			}
			std::make_heap(results_.begin(), results_.end(), FarthestOnTop());
		}
		expand(graph, accept);

		round_.assign(results_.begin(), results_.end());
		std::sort(round_.begin(), round_.end(), closer);
		size_t before = out.size();
		for (const Candidate &c : round_) {
			if (emitted_->contains(c.id))
				continue;
			/* Strict order: a node found late but closer than what was already returned is
			 * dropped, since the executor trusts the index's order. */
			if (strict_ && any_emitted_ && c.dist < last_emitted_)
				continue;
			emitted_->test_and_set(c.id);
			out.push_back(c);
			last_emitted_ = c.dist;
			any_emitted_ = true;
		}
		if (candidates_.empty() && deferred_.empty() && accepted_.size() <= ef_)
			exhausted_ = true;
		if (out.size() > before)
			return true;
	}
	return false;
}

/// Traversal beam of a quantized scan, in multiples of ef_search. One bit per dimension ranks
/// neighbours coarsely, so the beam gathers more candidates than are asked for and all of them
/// are re-ranked by exact distance; walking codes is cheap (a 784-dimensional code is 104
/// bytes), the re-ranking costs one exact distance per candidate.
constexpr uint32_t kQuantizedBeamFactor = 4;

/// A quantized scan returns 1/kRerankEmitShare of its re-ranked candidates per batch, the
/// closest, and holds the rest: later batches arrive in code-distance order, and whatever they
/// bring that is closer than rows already returned must be dropped to keep the order. With an
/// eighth, a scan drained to the end returns about 98% of the rows (a half: about 70%).
constexpr size_t kRerankEmitShare = 8;

/// The results of an index scan, nearest first: the graph search, and for quantized indexes
/// the re-ranking of every batch by exact distance. Results never come closer than one given
/// before (the executor trusts the index's order): a late find that would break the order is
/// skipped.
class ScanCursor
{
public:
	/// `query` is the query in stored form (normalised for cosine), of `dims` dimensions;
	/// `centroid` is the index's code centroid (quantized indexes only).
	ScanCursor(const IndexMeta &meta, const std::vector<float> &centroid, const uint8_t *query, uint32_t dims,
			   uint32_t ef);

	/// Appends the next results to `out`; returns false when there are no more.
	template <typename Filter>
	bool next(StoreReader &reader, const Filter &accept, std::vector<Candidate> &out);

	/// Nodes whose distance the graph search computed so far.
	uint64_t visited() const { return search_ == nullptr ? 0 : search_->visited(); }

private:
	Space exact_;
	AlignedBytes query_;
	bool rerank_;
	bool started_ = false;
	std::unique_ptr<ScanSearch> search_;
	std::vector<Candidate> batch_;
	/// Re-ranked candidates held back (see kRerankEmitShare), which the next batch, found by
	/// code distance and so not in exact order, may still precede.
	std::vector<Candidate> pending_;
	bool any_emitted_ = false;
	float last_emitted_ = 0.0f;
};

template <typename Filter>
bool
ScanCursor::next(StoreReader &reader, const Filter &accept, std::vector<Candidate> &out)
{
	if (search_ == nullptr)
		return false;
	if (!started_) {
		/* A query equal to a stored vector (looking for rows like a given row) starts next to
		 * it: the graph search is approximate and might otherwise settle on its neighbours. */
		started_ = true;
		ItemRecord twin;
		uint32_t id = reader.find_identical(query_.data(), std::numeric_limits<size_t>::max(), &twin);
		if (id != kNoItem)
			search_->add_seed(id);
	}
	if (!rerank_)
		return search_->next(reader, accept, out);
	for (;;) {
		batch_.clear();
		bool more = search_->next(reader, accept, batch_);
		for (Candidate &c : batch_) {
			VectorRef v = reader.vector(c.id);
			c.dist = !v ? std::numeric_limits<float>::infinity()
						: exact_.distance(VectorRef{query_.data(), Encoding::Raw}, v);
			pending_.push_back(c);
		}
		std::sort(pending_.begin(), pending_.end(), closer);
		/* Emit the closest part and keep the rest for the next batch; all of it at the end. */
		size_t emit = more ? (pending_.size() + kRerankEmitShare - 1) / kRerankEmitShare : pending_.size();
		size_t before = out.size();
		for (size_t i = 0; i < emit; i++) {
			const Candidate &c = pending_[i];
			if (any_emitted_ && c.dist < last_emitted_)
				continue;
			out.push_back(c);
			last_emitted_ = c.dist;
			any_emitted_ = true;
		}
		pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(emit));
		if (out.size() > before)
			return true;
		if (!more && pending_.empty())
			return false;
	}
}

} // namespace hannoy
