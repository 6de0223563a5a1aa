/*
 * build_graph.hpp: the graph of a bulk build, held in memory while it is constructed.
 *
 * Only links and distances live here (about 8 bytes per link); the vectors stay in the LMDB
 * file's memory map and are reached through a pointer table, so the build's own memory does
 * not grow with the dimension. Each list keeps its neighbours' distances so pruning an
 * overflowing list does not recompute them. When construction is done, write_links() stores
 * every list as a roaring bitmap in key order.
 */
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "../distance/metric.hpp"
#include "../store/index_store.hpp"
#include "hnsw.hpp"

namespace hannoy
{

class BuildGraph
{
public:
	/// `space` computes traversal distances over the pointers given to add().
	BuildGraph(const Space &space, uint32_t m, uint32_t ef_construction, uint64_t level_seed);

	/// Registers items 0..n-1, whose stored vectors are at `vectors[id]` (valid until the
	/// build ends), draws their levels and sizes every list. Only items whose `present` flag
	/// is set become nodes (others were folded into an identical item). Nothing is linked yet.
	void prepare(std::vector<const uint8_t *> vectors, std::vector<uint8_t> present);
	/// An order of insertion that gives a good graph whatever order the items came in: the
	/// highest levels first, so upper layers exist before the crowd of layer 0 arrives, then
	/// a seeded shuffle, so rows stored grouped (by category, by time) do not arrive as
	/// one cluster after another. Deterministic for a given seed.
	std::vector<uint32_t> insertion_order() const;
	/// Links a prepared item into the graph built so far (Algorithm 1).
	void insert(uint32_t id);
	/// Makes every item reachable from the entry point on layer 0. Pruning can leave an item
	/// with no incoming link (every neighbour chose closer ones); such an item is then linked
	/// from its nearest reachable node, in place of that node's neighbour with the most other
	/// incoming links. Returns how many links were added.
	uint32_t connect_unreachable();

	uint32_t size() const { return static_cast<uint32_t>(levels_.size()); }
	uint32_t entry_point() const { return entry_; }
	uint8_t max_level() const { return max_level_; }
	uint8_t level(uint32_t id) const { return levels_[id]; }
	/// Largest list length on a layer: 2*m on layer 0, m above.
	uint32_t capacity(uint8_t layer) const { return layer == 0 ? m0_ : m_; }
	/// Bytes used by links and bookkeeping.
	size_t memory_bytes() const;

	/// Writes all lists (and nothing else) to the store's links database, committing every
	/// `chunk` items; `between_chunks` runs outside any transaction (progress, interrupts).
	void write_links(IndexStore &store, uint32_t chunk,
					 const std::function<void(uint32_t done)> &between_chunks);

	/* Graph interface used by the algorithms in hnsw.hpp. */
	bool distance_to(const void *query, uint32_t id, float *out) const
	{
		*out = space_.distance(query, vectors_[id]);
		return true;
	}
	float distance_between(uint32_t a, uint32_t b) const { return space_.distance(vectors_[a], vectors_[b]); }
	bool zero_is_duplicate() const { return space_.zero_is_duplicate(); }
	void neighbors(uint32_t id, uint8_t layer, std::vector<uint32_t> &out) const;
	const void *vector(uint32_t id) const { return vectors_[id]; }
	/// Sets slot `slot` of item `target`'s layer-0 list (slot == its size: appends).
	void set_link(uint32_t target, size_t slot, uint32_t id, float dist);

private:
	struct List {
		uint8_t *count;
		uint32_t *ids;
		float *dists;
	};
	List list(uint32_t id, uint8_t layer);
	void set_list(uint32_t id, uint8_t layer, const std::vector<Candidate> &selected);
	void add_reverse_link(uint32_t target, uint8_t layer, uint32_t id, float dist);

	Space space_;
	uint32_t m_;
	uint32_t m0_;
	uint32_t ef_construction_;
	uint64_t level_seed_;

	std::vector<const uint8_t *> vectors_;
	std::vector<uint8_t> present_;
	std::vector<uint8_t> levels_;
	/* Layer 0: fixed slots of m0 per item. */
	std::vector<uint8_t> count0_;
	std::vector<uint32_t> ids0_;
	std::vector<float> dists0_;
	/* Layers >= 1: item -> index of its first upper slot; each slot holds m links. */
	std::vector<uint32_t> upper_first_;
	std::vector<uint8_t> count_up_;
	std::vector<uint32_t> ids_up_;
	std::vector<float> dists_up_;

	uint32_t entry_ = kNoItem;
	uint8_t max_level_ = 0;

	SearchScratch scratch_;
	std::vector<Candidate> entry_points_;
	std::vector<Candidate> found_;
	std::vector<Candidate> selected_;
	std::vector<Candidate> prune_;
	std::vector<Candidate> chosen_;
};

} // namespace hannoy
