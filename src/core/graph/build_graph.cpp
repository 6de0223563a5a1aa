/*
 * build_graph.cpp: serial in-memory HNSW construction (Algorithm 1) and the final write.
 */
#include "build_graph.hpp"

#include <algorithm>

#include "../pure_cpp.hpp"

namespace hannoy
{

namespace
{
constexpr uint32_t kNoUpper = 0xffffffffu;
}

BuildGraph::BuildGraph(const Space &space, uint32_t m, uint32_t ef_construction, uint64_t level_seed)
	: space_(space), m_(m), m0_(2 * m), ef_construction_(ef_construction), level_seed_(level_seed)
{
}

void
BuildGraph::reserve(uint32_t n)
{
	vectors_.reserve(n);
	levels_.reserve(n);
	count0_.reserve(n);
	ids0_.reserve(static_cast<size_t>(n) * m0_);
	dists0_.reserve(static_cast<size_t>(n) * m0_);
	upper_first_.reserve(n);
}

size_t
BuildGraph::memory_bytes() const
{
	return vectors_.capacity() * sizeof(void *) + levels_.capacity() + count0_.capacity() +
		   ids0_.capacity() * 4 + dists0_.capacity() * 4 + upper_first_.capacity() * 4 + count_up_.capacity() +
		   ids_up_.capacity() * 4 + dists_up_.capacity() * 4;
}

BuildGraph::List
BuildGraph::list(uint32_t id, uint8_t layer)
{
	if (layer == 0) {
		size_t base = static_cast<size_t>(id) * m0_;
		return List{&count0_[id], &ids0_[base], &dists0_[base]};
	}
	size_t slot = static_cast<size_t>(upper_first_[id]) + layer - 1;
	return List{&count_up_[slot], &ids_up_[slot * m_], &dists_up_[slot * m_]};
}

void
BuildGraph::neighbors(uint32_t id, uint8_t layer, std::vector<uint32_t> &out) const
{
	if (layer == 0) {
		size_t base = static_cast<size_t>(id) * m0_;
		out.insert(out.end(), ids0_.begin() + base, ids0_.begin() + base + count0_[id]);
		return;
	}
	if (layer > levels_[id])
		return;
	size_t slot = static_cast<size_t>(upper_first_[id]) + layer - 1;
	out.insert(out.end(), ids_up_.begin() + slot * m_, ids_up_.begin() + slot * m_ + count_up_[slot]);
}

void
BuildGraph::set_list(uint32_t id, uint8_t layer, const std::vector<Candidate> &selected)
{
	List l = list(id, layer);
	*l.count = static_cast<uint8_t>(selected.size());
	for (size_t i = 0; i < selected.size(); i++) {
		l.ids[i] = selected[i].id;
		l.dists[i] = selected[i].dist;
	}
}

void
BuildGraph::add_reverse_link(uint32_t target, uint8_t layer, uint32_t id, float dist)
{
	List l = list(target, layer);
	uint32_t cap = capacity(layer);
	if (*l.count < cap) {
		l.ids[*l.count] = id;
		l.dists[*l.count] = dist;
		(*l.count)++;
		return;
	}
	/* Full: re-select among the old neighbours and the new one. */
	prune_.clear();
	for (uint32_t i = 0; i < *l.count; i++)
		prune_.push_back(Candidate{l.dists[i], l.ids[i]});
	prune_.push_back(Candidate{dist, id});
	std::sort(prune_.begin(), prune_.end(), closer);
	select_neighbors(*this, prune_, cap, selected_);
	set_list(target, layer, selected_);
}

void
BuildGraph::add(uint32_t id, const uint8_t *vector)
{
	if (id != levels_.size())
		throw Error(ErrorCode::Internal, "build graph items must be added in id order");
	uint8_t level = draw_level(level_seed_, id, m_);
	vectors_.push_back(vector);
	levels_.push_back(level);
	count0_.push_back(0);
	ids0_.resize(ids0_.size() + m0_);
	dists0_.resize(dists0_.size() + m0_);
	if (level > 0) {
		upper_first_.push_back(static_cast<uint32_t>(count_up_.size()));
		count_up_.resize(count_up_.size() + level, 0);
		ids_up_.resize(ids_up_.size() + static_cast<size_t>(level) * m_);
		dists_up_.resize(dists_up_.size() + static_cast<size_t>(level) * m_);
	} else {
		upper_first_.push_back(kNoUpper);
	}

	if (entry_ == kNoItem) {
		entry_ = id;
		max_level_ = level;
		return;
	}

	const void *query = vector;
	Candidate current{space_.distance(query, vectors_[entry_]), entry_};
	for (int layer = max_level_; layer > level; layer--)
		current = greedy_closest(*this, query, current, static_cast<uint8_t>(layer), scratch_.neighbors);

	entry_points_.assign(1, current);
	for (int layer = std::min<int>(level, max_level_); layer >= 0; layer--) {
		uint8_t l = static_cast<uint8_t>(layer);
		search_layer(*this, query, entry_points_, ef_construction_, l, AcceptAll(), scratch_, levels_.size(),
					 found_);
		select_neighbors(*this, found_, capacity(l), selected_);
		set_list(id, l, selected_);
		/* Copy: add_reverse_link reuses selected_ as scratch. */
		chosen_.assign(selected_.begin(), selected_.end());
		for (const Candidate &c : chosen_)
			add_reverse_link(c.id, l, id, c.dist);
		entry_points_.swap(found_);
	}
	if (level > max_level_) {
		entry_ = id;
		max_level_ = level;
	}
}

void
BuildGraph::write_links(IndexStore &store, uint32_t chunk, const std::function<void(uint32_t done)> &between_chunks)
{
	uint32_t n = size();
	std::vector<uint32_t> ids;
	for (uint32_t start = 0; start < n; start += chunk) {
		uint32_t end = std::min(n, start + chunk);
		lmdb::run_write(store.env(), [&](lmdb::Txn &txn) {
			StoreWriter writer(store, txn);
			for (uint32_t id = start; id < end; id++) {
				for (uint8_t layer = 0; layer <= levels_[id]; layer++) {
					ids.clear();
					neighbors(id, layer, ids);
					writer.put_links(id, layer, ids.data(), ids.size(), MDB_APPEND);
				}
			}
		});
		if (between_chunks)
			between_chunks(end);
	}
}

} // namespace hannoy
