/*
 * builder.hpp: a whole bulk build of an index file, from items given one at a time.
 *
 * Phase 1 appends vectors, items and TIDs to the file in large transactions. Phase 2 builds
 * the graph in memory, reading vectors straight from the file's memory map. Phase 3 writes
 * every link list in key order, then the meta record, and syncs the file once.
 */
#pragma once

#include <cstdint>
#include <functional>

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

class IndexBuilder
{
public:
	/// Progress callback, run outside any transaction; it may throw to cancel the build.
	using Progress = std::function<void(BuildPhase phase, uint64_t done, uint64_t total)>;

	explicit IndexBuilder(IndexStore &store) : store_(store), loader_(store) {}

	/// Adds an item (phase 1); `vector` is in stored form. Returns its id.
	uint32_t add(HeapTid tid, const uint8_t *vector)
	{
		uint32_t id = loader_.add(tid, vector);
		loader_.maybe_flush();
		return id;
	}
	uint32_t count() const { return loader_.count(); }

	/// Runs phases 2 and 3 and marks the file complete.
	void finish(const Progress &progress);

	/// Memory used by the in-memory graph at its largest.
	size_t graph_memory_bytes() const { return graph_memory_; }

private:
	/// Binary quantization: stores the centroid of the loaded vectors and every item's code.
	void write_codes();
	/// Folds items with identical vectors into one (several TIDs, one graph node) and writes
	/// the hashes database. Returns, per item id, whether it stays a node of the graph.
	std::vector<uint8_t> fold_duplicates();

	IndexStore &store_;
	BulkLoader loader_;
	size_t graph_memory_ = 0;
};

} // namespace hannoy
