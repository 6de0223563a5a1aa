/*
 * build_graph.hpp: the graph of a bulk build, held in one memory region while it is built.
 *
 * The region holds only links, their distances and per-node locks (about 8 bytes per link);
 * the vectors stay in the LMDB file's memory map and each participant reaches them through
 * its own pointer table. Everything in the region is addressed by offsets, so the region can
 * be private memory, a dynamic shared memory segment or a mapped file, mapped at a different
 * address by every process of a parallel build.
 *
 * Any number of participants (threads or processes, each with its own BuildGraph attached to
 * the region) insert items concurrently: they claim items from a shared insertion order and
 * lock one node at a time (a spin lock per node) to read or rewrite its lists. The entry
 * point is fixed before the first insertion (the first item of the order, which has the top
 * level), so no insertion ever has to change it. When construction is done, one participant
 * makes every item reachable and writes the lists to the store in one pass.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "../distance/metric.hpp"
#include "../store/index_store.hpp"
#include "hnsw.hpp"

namespace hannoy
{

/// Shape of a build graph: what a region needs to hold it.
struct BuildGraphShape {
	uint32_t items = 0; ///< ids 0..items-1
	uint32_t m = 16;
	uint32_t ef_construction = 64;
	uint64_t level_seed = 0;
};

class BuildGraph
{
public:
	/// Bytes of the region a graph of `shape` needs (levels are drawn to size the upper layers).
	static size_t region_bytes(const BuildGraphShape &shape);
	/// Lays out an empty graph in `region` (region_bytes(shape) bytes, 8-byte aligned): draws the
	/// levels, computes the insertion order of the items whose `present` flag is set (others were
	/// folded into an identical item) and makes the first of them the entry point. Run by one
	/// participant before any other attaches.
	static void initialize(void *region, size_t bytes, const BuildGraphShape &shape,
						   const std::vector<uint8_t> &present);

	/// Reorders the insertion order of an initialized region so that items close to each other
	/// are inserted close together in time (float vectors only, `mean` their centroid; see
	/// build_graph.cpp). Run by one participant, after initialize() and before any other
	/// attaches.
	static void arrange_for_locality(void *region, const Space &space, const std::vector<VectorRef> &vectors,
									 const std::vector<float> &mean);

	/// Items of an initialized region.
	static uint32_t region_items(const void *region);
	/// The insertion order of an initialized region (a copy).
	static std::vector<uint32_t> insertion_order(const void *region);
	/// Level of item `id` in an initialized region.
	static uint8_t region_level(const void *region, uint32_t id);
	/// Makes every participant stop at its next claim (one of them failed: the build is lost).
	static void abandon(void *region);
	/// Whether a participant abandoned the construction.
	static bool abandoned(const void *region);

	/// Attaches to an initialized region. `space` computes traversal distances over this
	/// process's stored vectors `vectors[id]` (valid while the object is used).
	BuildGraph(void *region, const Space &space, std::vector<VectorRef> vectors);

	/// Claims items from the shared insertion order and links them until none is left. Safe to
	/// run in many participants at once. `between` runs after each claimed batch with the number
	/// of items linked so far by all participants; it may throw to stop this participant.
	void insert_claimed(const std::function<void(uint32_t linked)> &between);
	/// Links one prepared item into the graph built so far (Algorithm 1). Thread-safe.
	void insert(uint32_t id);
	/// Makes every item reachable from the entry point on layer 0 (run by one participant when
	/// all have finished). Pruning can leave an item with no incoming link (every neighbour
	/// chose closer ones); such an item is then linked from its nearest reachable node, in place
	/// of that node's neighbour with the most other incoming links. Returns links added.
	uint32_t connect_unreachable();
	/// Writes all lists (and nothing else) to the store's links database, committing every
	/// `chunk` items; `between_chunks` runs outside any transaction (progress, interrupts).
	void write_links(IndexStore &store, uint32_t chunk,
					 const std::function<void(uint32_t done)> &between_chunks);

	uint32_t size() const;
	/// Items to link (present ones) and items linked so far by all participants.
	uint32_t to_link() const;
	uint32_t linked() const;
	uint32_t entry_point() const;
	uint8_t max_level() const;
	uint8_t level(uint32_t id) const { return levels_[id]; }
	/// Largest list length on a layer: 2*m on layer 0, m above.
	uint32_t capacity(uint8_t layer) const { return layer == 0 ? m0_ : m_; }

	/* Graph interface used by the algorithms in hnsw.hpp. */
	bool distance_to(VectorRef query, uint32_t id, float *out) const
	{
		*out = space_.distance(query, vectors_[id]);
		return true;
	}
	float distance_between(uint32_t a, uint32_t b) const { return space_.distance(vectors_[a], vectors_[b]); }
	bool zero_is_duplicate() const { return space_.zero_is_duplicate(); }
	/// Appends a copy of a list, taken under the node's lock.
	void neighbors(uint32_t id, uint8_t layer, std::vector<uint32_t> &out) const;
	VectorRef vector(uint32_t id) const { return vectors_[id]; }
	void prefetch(uint32_t id) const
	{
		const VectorRef &v = vectors_[id];
		prefetch_to_cache(v.data, space_.bytes(v.encoding));
	}
	/// Sets slot `slot` of item `target`'s layer-0 list (slot == its size: appends).
	void set_link(uint32_t target, size_t slot, uint32_t id, float dist);

	struct Header;

private:
	struct List {
		uint8_t *count;
		uint32_t *ids;
		float *dists;
	};
	List list(uint32_t id, uint8_t layer) const;
	void lock(uint32_t id) const;
	void unlock(uint32_t id) const;
	void set_list(uint32_t id, uint8_t layer, const std::vector<Candidate> &selected);
	void add_reverse_link(uint32_t target, uint8_t layer, uint32_t id, float dist);

	Header *header_;
	Space space_;
	uint32_t m_;
	uint32_t m0_;
	uint32_t ef_construction_;
	std::vector<VectorRef> vectors_;

	/* Views into the region. */
	uint8_t *levels_;
	uint8_t *locks_;
	uint8_t *count0_;
	uint32_t *ids0_;
	float *dists0_;
	uint32_t *upper_first_;
	uint8_t *count_up_;
	uint32_t *ids_up_;
	float *dists_up_;
	uint32_t *order_;

	/* This participant's scratch. */
	SearchScratch scratch_;
	std::vector<Candidate> entry_points_;
	std::vector<Candidate> found_;
	std::vector<Candidate> selected_;
	std::vector<Candidate> prune_;
	std::vector<Candidate> chosen_;
	std::vector<Candidate> linking_; ///< the selection being linked by insert()
};

} // namespace hannoy
