/*
 * builder.hpp: a whole bulk build of an index file, from items given one at a time.
 *
 * Phase 1 appends vectors, items and TIDs to the file in large transactions (several
 * participants may load at once, each with its own loader). Phase 2 builds the graph in one
 * memory region, reading vectors straight from the file's memory map; any number of
 * participants (threads, or processes of a parallel build) may link items concurrently.
 * Phase 3 writes every link list in key order, then the meta record, and syncs the file once.
 */
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "../store/index_store.hpp"
#include "build_graph.hpp"
#include "store_graph.hpp"

namespace hannoy
{

enum class BuildPhase {
	LoadingVectors = 1,
	BuildingGraph = 2,
	WritingGraph = 3,
};

/// Where the graph of a build is held and who links its items.
class GraphConstruction
{
public:
	virtual ~GraphConstruction() = default;
	/// Memory for the graph's region (8-byte aligned), valid until the build ends.
	virtual void *allocate(size_t bytes) = 0;
	/// Runs `participate(true)` in this thread and lets the other participants (if any) join
	/// in; returns when all have finished, rethrowing a participant's failure.
	virtual void run(void *region, const std::function<void(bool leader)> &participate) = 0;
};

/// A construction in private memory, by this thread and `threads` more.
class PrivateConstruction : public GraphConstruction
{
public:
	explicit PrivateConstruction(unsigned threads = 0) : threads_(threads) {}
	void *allocate(size_t bytes) override;
	void run(void *region, const std::function<void(bool leader)> &participate) override;

private:
	unsigned threads_;
	std::unique_ptr<uint64_t[]> memory_;
};

/// Pointers to the traversal vectors (binary codes when the graph is built over them) of
/// items 0..n-1, valid while `reader`'s transaction is open. Holes (ids without an item)
/// point at their zero-filled slot.
std::vector<VectorRef> construction_vectors(StoreReader &reader, uint32_t n, bool codes);

/// A participant of a construction in another process: maps `store`'s vectors in a read
/// transaction of its own and links claimed items of `region` until none is left.
void link_claimed_items(IndexStore &store, void *region, const std::function<void(uint32_t linked)> &between);

class IndexBuilder
{
public:
	/// Progress callback, run outside any transaction; it may throw to cancel the build.
	using Progress = std::function<void(BuildPhase phase, uint64_t done, uint64_t total)>;

	/// `shared_blocks`: the block counter of a parallel load (see BulkLoader), else nullptr.
	/// `flush_bytes`: vector bytes the loader buffers before writing them.
	explicit IndexBuilder(IndexStore &store, uint32_t *shared_blocks = nullptr,
						  size_t flush_bytes = BulkLoader::kDefaultFlushBytes)
		: store_(store), shared_blocks_(shared_blocks), loader_(store, shared_blocks, flush_bytes)
	{
	}

	/// Adds an item (phase 1); `vector` is in stored form. Returns its id.
	uint32_t add(HeapTid tid, const uint8_t *vector)
	{
		uint32_t id = loader_.add(tid, vector);
		loader_.maybe_flush();
		return id;
	}
	/// Writes what this participant's loader still buffers (other participants of a parallel
	/// load call this before the leader calls finish()).
	void finish_loading() { loader_.finish(); }
	/// Rows (heap TIDs) in the file once finish() has run, from all participants.
	uint32_t rows() const { return rows_; }

	/// Runs phases 2 and 3 and marks the file complete. Every other participant of a parallel
	/// load must have finished loading. `construction` (default: this thread, private
	/// memory) holds the graph and runs its participants.
	void finish(const Progress &progress, GraphConstruction *construction = nullptr);

	/// Bytes of the graph region.
	size_t graph_memory_bytes() const { return graph_memory_; }

private:
	/// Items present in the file, with what phase 2 needs to know about their vectors.
	struct Census {
		std::vector<uint8_t> present;                      ///< per id: item exists
		std::vector<std::pair<uint64_t, uint32_t>> hashes; ///< (hash of the vector, id)
		std::vector<float> mean; ///< float vectors: their centroid (binary codes, locality order)
		float max_norm = 0.0f;   ///< inner product only
	};
	Census take_census(uint32_t n);
	/// Binary quantization: stores the centroid of the loaded vectors and every item's code.
	void write_codes(uint32_t n, const std::vector<float> &centroid);
	/// Folds items with identical vectors into one (several TIDs, one graph node) and writes
	/// the hashes database; clears `present` for the folded items.
	void fold_duplicates(Census &census);

	IndexStore &store_;
	uint32_t *shared_blocks_;
	BulkLoader loader_;
	uint32_t rows_ = 0;
	size_t graph_memory_ = 0;
};

} // namespace hannoy
