/*
 * hnsw.hpp: the HNSW algorithms shared by the in-memory build graph and the LMDB graph
 * (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
 * Hierarchical Navigable Small World graphs", 2016/2018).
 *
 * Both graphs expose the same small interface to these templates:
 *   bool distance_to(VectorRef query, uint32_t id, float *out)  // false: item has no vector
 *   float distance_between(uint32_t a, uint32_t b)
 *   void neighbors(uint32_t id, uint8_t layer, std::vector<uint32_t> &out)  // appends
 *   bool zero_is_duplicate()  // whether distance 0 means identical vectors
 *   void prefetch(uint32_t id)  // asks the CPU for the item's vector, about to be compared
 */
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "../store/codec.hpp"

namespace hannoy
{

/// A 64-byte-aligned byte buffer, for query vectors (the kernels are fastest on aligned data).
class AlignedBytes
{
public:
	explicit AlignedBytes(size_t size = 0)
		: data_(static_cast<uint8_t *>(::operator new[](size == 0 ? 64 : size, std::align_val_t(64)))),
		  size_(size)
	{
	}
	~AlignedBytes()
	{
		if (data_ != nullptr)
			::operator delete[](data_, std::align_val_t(64));
	}
	AlignedBytes(const AlignedBytes &) = delete;
	AlignedBytes &operator=(const AlignedBytes &) = delete;
	AlignedBytes(AlignedBytes &&other) noexcept : data_(other.data_), size_(other.size_)
	{
		other.data_ = nullptr;
		other.size_ = 0;
	}
	AlignedBytes &operator=(AlignedBytes &&other) noexcept
	{
		if (this != &other) {
			if (data_ != nullptr)
				::operator delete[](data_, std::align_val_t(64));
			data_ = other.data_;
			size_ = other.size_;
			other.data_ = nullptr;
			other.size_ = 0;
		}
		return *this;
	}
	uint8_t *data() { return data_; }
	const uint8_t *data() const { return data_; }
	size_t size() const { return size_; }

private:
	uint8_t *data_;
	size_t size_;
};

/// A node and its distance to the current query.
struct Candidate {
	float dist;
	uint32_t id;
};

/// Orders by distance, then id, so results are deterministic on ties.
inline bool
closer(const Candidate &a, const Candidate &b)
{
	return a.dist < b.dist || (a.dist == b.dist && a.id < b.id);
}

/// Heap comparators for std::push_heap & co (the top is the "largest" element).
struct FarthestOnTop {
	bool operator()(const Candidate &a, const Candidate &b) const { return closer(a, b); }
};
struct ClosestOnTop {
	bool operator()(const Candidate &a, const Candidate &b) const { return closer(b, a); }
};

/// Per-search "already seen" marks, cleared in O(1) by bumping an epoch.
class VisitedSet
{
public:
	/// Starts a new search over ids below `capacity` (the set grows if larger ids appear).
	void reset(size_t capacity)
	{
		if (marks_.size() < capacity)
			marks_.resize(capacity, 0);
		if (++epoch_ == 0) {
			std::fill(marks_.begin(), marks_.end(), 0);
			epoch_ = 1;
		}
	}
	/// Marks `id` and returns whether it was already marked.
	bool test_and_set(uint32_t id)
	{
		if (id >= marks_.size())
			marks_.resize(static_cast<size_t>(id) + 1 + marks_.size() / 2, 0);
		if (marks_[id] == epoch_)
			return true;
		marks_[id] = epoch_;
		return false;
	}
	bool contains(uint32_t id) const { return id < marks_.size() && marks_[id] == epoch_; }

private:
	std::vector<uint16_t> marks_;
	uint16_t epoch_ = 0;
};

/// Scratch buffers reused across searches.
struct SearchScratch {
	VisitedSet visited;
	std::vector<Candidate> candidates; ///< min-heap (ClosestOnTop)
	std::vector<Candidate> results;    ///< max-heap (FarthestOnTop)
	std::vector<uint32_t> neighbors;
};

/// An object borrowed from a small per-thread pool and given back on destruction. A scan of a
/// large index then starts by bumping its visited sets' epochs instead of allocating and
/// zeroing marks for every item, which cost more than a search on small ef_search.
template <typename T> class Pooled
{
public:
	Pooled()
	{
		auto &pool = free_list();
		if (!pool.empty()) {
			object_ = std::move(pool.back());
			pool.pop_back();
		} else {
			object_ = std::make_unique<T>();
		}
	}
	~Pooled()
	{
		auto &pool = free_list();
		if (object_ == nullptr || pool.size() >= kKept)
			return;
		try {
			pool.push_back(std::move(object_));
		} catch (const std::bad_alloc &) {
			/* not kept: freed with this object */
		}
	}
	Pooled(const Pooled &) = delete;
	Pooled &operator=(const Pooled &) = delete;

	T *operator->() { return object_.get(); }
	T &operator*() { return *object_; }

private:
	/* Enough for the few scans a process runs at once. */
	static constexpr size_t kKept = 4;
	static std::vector<std::unique_ptr<T>> &free_list()
	{
		thread_local std::vector<std::unique_ptr<T>> pool;
		return pool;
	}

	std::unique_ptr<T> object_;
};

/// A fast, well-mixed 64-bit hash (splitmix64's finaliser).
uint64_t mix64(uint64_t x);

/// Top layer of an item, drawn from the geometric law P(level >= l) = m^-l. Depends only on
/// (seed, id), so builds are reproducible whatever the insertion order.
uint8_t draw_level(uint64_t seed, uint32_t id, uint32_t m);

/// Accepts every node as a result.
struct AcceptAll {
	bool operator()(uint32_t) const { return true; }
};

/// Loads `size` bytes from `data` into the CPU caches without waiting for them.
inline void
prefetch_to_cache(const void *data, size_t size)
{
	const char *p = static_cast<const char *>(data);
	for (size_t offset = 0; offset < size; offset += 64)
		__builtin_prefetch(p + offset);
}

/// Greedy walk on one layer (ef = 1): moves to a closer neighbour until none is closer.
template <typename Graph>
Candidate
greedy_closest(Graph &graph, VectorRef query, Candidate current, uint8_t layer, std::vector<uint32_t> &buffer)
{
	for (bool changed = true; changed;) {
		changed = false;
		buffer.clear();
		graph.neighbors(current.id, layer, buffer);
		for (uint32_t id : buffer)
			graph.prefetch(id);
		for (uint32_t id : buffer) {
			float d;
			if (graph.distance_to(query, id, &d) && closer(Candidate{d, id}, current)) {
				current = Candidate{d, id};
				changed = true;
			}
		}
	}
	return current;
}

/// Beam width on the layers above 0 on the way down, for scans and incremental inserts.
/// Greedy descent (width 1) can stop in the wrong region when the data is strongly
/// clustered and the sparse upper layers link few clusters to each other; a narrow beam
/// there costs little (upper layers hold 1/m of the items) and removes those failures.
/// The bulk build shuffles its insertion order instead and descends greedily.
constexpr uint32_t kUpperLayerBeam = 8;

/// Beam search on one layer (Algorithm 2). `entry` holds the entry points with their
/// distances; on return `out` holds up to `ef` accepted nodes, closest first. Nodes the
/// filter rejects are traversed but never returned.
/// Keeps the ids of `ids` not visited yet (marking them visited) and asks for all their
/// vectors at once, before any is compared: the reads from memory then overlap instead of
/// each distance waiting for its own.
template <typename Graph, typename Visited>
inline void
keep_unvisited_and_prefetch(Graph &graph, Visited &visited, std::vector<uint32_t> &ids)
{
	size_t kept = 0;
	for (uint32_t id : ids) {
		if (visited.test_and_set(id))
			continue;
		ids[kept++] = id;
		graph.prefetch(id);
	}
	ids.resize(kept);
}

template <typename Graph, typename Filter>
void
search_layer(Graph &graph, VectorRef query, const std::vector<Candidate> &entry, uint32_t ef, uint8_t layer,
			 const Filter &accept, SearchScratch &scratch, size_t id_capacity, std::vector<Candidate> &out)
{
	auto &candidates = scratch.candidates;
	auto &results = scratch.results;
	candidates.clear();
	results.clear();
	scratch.visited.reset(id_capacity);
	for (const Candidate &e : entry) {
		if (scratch.visited.test_and_set(e.id))
			continue;
		candidates.push_back(e);
		std::push_heap(candidates.begin(), candidates.end(), ClosestOnTop());
		if (accept(e.id)) {
			results.push_back(e);
			std::push_heap(results.begin(), results.end(), FarthestOnTop());
		}
	}
	while (results.size() > ef) {
		std::pop_heap(results.begin(), results.end(), FarthestOnTop());
		results.pop_back();
	}
	while (!candidates.empty()) {
		Candidate current = candidates.front();
		if (results.size() >= ef && current.dist > results.front().dist)
			break;
		std::pop_heap(candidates.begin(), candidates.end(), ClosestOnTop());
		candidates.pop_back();
		scratch.neighbors.clear();
		graph.neighbors(current.id, layer, scratch.neighbors);
		keep_unvisited_and_prefetch(graph, scratch.visited, scratch.neighbors);
		for (uint32_t id : scratch.neighbors) {
			float d;
			if (!graph.distance_to(query, id, &d))
				continue;
			if (results.size() < ef || d < results.front().dist) {
				candidates.push_back(Candidate{d, id});
				std::push_heap(candidates.begin(), candidates.end(), ClosestOnTop());
				if (accept(id)) {
					results.push_back(Candidate{d, id});
					std::push_heap(results.begin(), results.end(), FarthestOnTop());
					if (results.size() > ef) {
						std::pop_heap(results.begin(), results.end(), FarthestOnTop());
						results.pop_back();
					}
				}
			}
		}
	}
	out.assign(results.begin(), results.end());
	std::sort(out.begin(), out.end(), closer);
}

/// Most neighbours at distance 0 (duplicates of the base, or identical binary codes) a list
/// keeps. The heuristic below never prunes them (nothing is closer than 0), so without a cap
/// many identical rows would fill each other's lists and form a closed clique that searches
/// cannot leave; a couple of links keep duplicates chained and the rest of the list diverse.
constexpr uint32_t kMaxDuplicateNeighbors = 2;

/// Heuristic neighbour selection (Algorithm 4 without extension): walks candidates closest
/// first and keeps one unless it is closer to an already kept neighbour than to the base
/// node. `candidates` must be sorted closest first and must not contain the base node.
///
/// A relaxed rule (prune only when a kept neighbour is closer by some factor, as DiskANN's
/// Vamana graphs do) was measured: with a factor of 1.1 on squared distances, Fashion-MNIST
/// reached a given recall after visiting a fifth fewer nodes, but on a million 128-dimensional
/// points in 1,000 Gaussian clusters recall at ef_search 40 fell from 0.919 to 0.875 and
/// queries/s at equal recall halved: where distances concentrate, a relaxed rule keeps only
/// same-cluster neighbours and drops the long links between clusters.
///
/// Filling a list with the closest pruned candidates up to m (the paper's
/// keepPrunedConnections; the heuristic leaves Fashion-MNIST's layer-0 lists about 11 long)
/// was measured too: Fashion-MNIST reached recall 0.996 and 0.9985 computing 14-16% fewer
/// distances, but its build took 17-27% longer (twice as long filling up to 2m), and on
/// 200,000 clustered 128-dimensional points recall at ef_search 40 fell from 0.992 to 0.989.
template <typename Graph>
void
select_neighbors(Graph &graph, const std::vector<Candidate> &candidates, uint32_t max_neighbors,
				 std::vector<Candidate> &out)
{
	out.clear();
	/* Only where a vector's distance to itself is 0 does 0 mean "duplicate"; the inner
	 * product's stand-in (negative dot product) is below 0 for ordinary neighbours. */
	const bool zero_means_duplicate = graph.zero_is_duplicate();
	uint32_t duplicates = 0;
	for (const Candidate &c : candidates) {
		if (out.size() >= max_neighbors)
			break;
		if (zero_means_duplicate && c.dist <= 0.0f && duplicates >= kMaxDuplicateNeighbors)
			continue;
		bool keep = true;
		for (const Candidate &kept : out) {
			if (graph.distance_between(c.id, kept.id) < c.dist) {
				keep = false;
				break;
			}
		}
		if (keep) {
			out.push_back(c);
			duplicates += c.dist <= 0.0f;
		}
	}
}

} // namespace hannoy

namespace hannoy
{

/// Walks from `entry` (on `top`) down to the layer above `bottom` with a beam of `beam`
/// nodes per layer (1: greedy); on return `entry` holds the entry points for `bottom`.
template <typename Graph>
void
descend(Graph &graph, VectorRef query, std::vector<Candidate> &entry, int top, int bottom, uint32_t beam,
		SearchScratch &scratch, size_t id_capacity, std::vector<Candidate> &buffer)
{
	for (int layer = top; layer > bottom; layer--) {
		if (beam <= 1) {
			Candidate best = entry[0];
			for (const Candidate &c : entry)
				if (closer(c, best))
					best = c;
			entry.assign(1,
						 greedy_closest(graph, query, best, static_cast<uint8_t>(layer), scratch.neighbors));
		} else {
			search_layer(graph, query, entry, beam, static_cast<uint8_t>(layer), AcceptAll(), scratch,
						 id_capacity, buffer);
			entry.swap(buffer);
		}
	}
}

} // namespace hannoy

namespace hannoy
{

/// Makes every item in `items` reachable from `entry` on layer 0 (whatever is reachable on
/// layer 0 is reachable from the entry point through the upper layers too).
///
/// Pruning can leave an item without incoming links: each of its neighbours kept closer
/// ones. Such an item is linked from its nearest reachable node: appended when that node's
/// list has room, else in place of the neighbour that other nodes link to most (never one
/// with a single incoming link, which would orphan it in turn). `graph` provides the usual
/// search interface plus:
///   const void *vector(uint32_t id)
///   void set_link(uint32_t target, size_t slot, uint32_t id, float dist)  // slot == size: append
/// Returns how many links were added, or with `count_only` how many items are unreachable.
template <typename Graph>
uint32_t
connect_unreachable(Graph &graph, const std::vector<uint32_t> &items, uint32_t entry, uint8_t max_level,
					uint32_t capacity0, uint32_t ef, size_t id_capacity, bool count_only = false)
{
	if (entry == kNoItem || items.empty())
		return 0;
	std::vector<uint32_t> in_degree(id_capacity, 0);
	std::vector<uint8_t> reached(id_capacity, 0);
	std::vector<uint32_t> list, stack;
	for (uint32_t id : items) {
		list.clear();
		graph.neighbors(id, 0, list);
		for (uint32_t n : list)
			if (n < id_capacity)
				in_degree[n]++;
	}
	auto flood = [&](uint32_t from) {
		if (reached[from])
			return;
		reached[from] = 1;
		stack.push_back(from);
		while (!stack.empty()) {
			uint32_t id = stack.back();
			stack.pop_back();
			list.clear();
			graph.neighbors(id, 0, list);
			for (uint32_t n : list) {
				if (n < id_capacity && !reached[n]) {
					reached[n] = 1;
					stack.push_back(n);
				}
			}
		}
	};
	flood(entry);

	if (count_only) {
		uint32_t unreachable = 0;
		for (uint32_t id : items)
			unreachable += reached[id] ? 0 : 1;
		return unreachable;
	}

	SearchScratch scratch;
	std::vector<Candidate> entry_points, found;
	auto accept_reached = [&](uint32_t id) { return id < id_capacity && reached[id] != 0; };
	uint32_t added = 0;
	for (uint32_t id : items) {
		if (reached[id])
			continue;
		VectorRef query = graph.vector(id);
		float d;
		if (!query || !graph.distance_to(query, entry, &d))
			continue;
		entry_points.assign(1, Candidate{d, entry});
		descend(graph, query, entry_points, max_level, 0, 1, scratch, id_capacity, found);
		/* Start layer 0 from reachable nodes only: the descent may end inside the item's own
		 * unreachable region, whose links never lead out of it. */
		entry_points.erase(std::remove_if(entry_points.begin(), entry_points.end(),
										  [&](const Candidate &c) { return !accept_reached(c.id); }),
						   entry_points.end());
		entry_points.push_back(Candidate{d, entry});
		search_layer(graph, query, entry_points, ef, 0, accept_reached, scratch, id_capacity, found);
		bool linked = false;
		for (const Candidate &c : found) {
			if (c.id == id)
				continue;
			list.clear();
			graph.neighbors(c.id, 0, list);
			if (list.size() < capacity0) {
				graph.set_link(c.id, list.size(), id, c.dist);
				linked = true;
			} else {
				size_t victim = list.size();
				for (size_t i = 0; i < list.size(); i++)
					if (list[i] < id_capacity && in_degree[list[i]] > 1 &&
						(victim == list.size() || in_degree[list[i]] > in_degree[list[victim]]))
						victim = i;
				if (victim != list.size()) {
					in_degree[list[victim]]--;
					graph.set_link(c.id, victim, id, c.dist);
					linked = true;
				}
			}
			if (linked)
				break;
		}
		if (linked) {
			in_degree[id]++;
			added++;
			flood(id);
		}
	}
	return added;
}

} // namespace hannoy
