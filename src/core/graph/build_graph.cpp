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
BuildGraph::prepare(std::vector<const uint8_t *> vectors, std::vector<uint8_t> present)
{
	uint32_t n = static_cast<uint32_t>(vectors.size());
	vectors_ = std::move(vectors);
	present_ = std::move(present);
	levels_.resize(n);
	count0_.assign(n, 0);
	ids0_.assign(static_cast<size_t>(n) * m0_, 0);
	dists0_.assign(static_cast<size_t>(n) * m0_, 0.0f);
	upper_first_.assign(n, kNoUpper);
	size_t upper_slots = 0;
	for (uint32_t id = 0; id < n; id++) {
		levels_[id] = draw_level(level_seed_, id, m_);
		if (levels_[id] > 0) {
			upper_first_[id] = static_cast<uint32_t>(upper_slots);
			upper_slots += levels_[id];
		}
	}
	count_up_.assign(upper_slots, 0);
	ids_up_.assign(upper_slots * m_, 0);
	dists_up_.assign(upper_slots * m_, 0.0f);
}

std::vector<uint32_t>
BuildGraph::insertion_order() const
{
	std::vector<std::pair<uint64_t, uint32_t>> keys;
	for (uint32_t id = 0; id < levels_.size(); id++) {
		if (!present_[id])
			continue;
		/* Level in the top byte (descending), then a hash of (seed, id) for the shuffle. */
		uint64_t shuffle = mix64(~level_seed_ ^ mix64(id)) >> 8;
		keys.emplace_back((static_cast<uint64_t>(kMaxLevel - levels_[id]) << 56) | shuffle, id);
	}
	std::sort(keys.begin(), keys.end());
	std::vector<uint32_t> order(keys.size());
	for (size_t i = 0; i < keys.size(); i++)
		order[i] = keys[i].second;
	return order;
}

size_t
BuildGraph::memory_bytes() const
{
	return vectors_.capacity() * sizeof(void *) + levels_.capacity() + count0_.capacity() +
		   ids0_.capacity() * 4 + dists0_.capacity() * 4 + upper_first_.capacity() * 4 +
		   count_up_.capacity() + ids_up_.capacity() * 4 + dists_up_.capacity() * 4;
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
BuildGraph::insert(uint32_t id)
{
	uint8_t level = levels_[id];
	const uint8_t *vector = vectors_[id];
	if (entry_ == kNoItem) {
		entry_ = id;
		max_level_ = level;
		return;
	}

	const void *query = vector;
	entry_points_.assign(1, Candidate{space_.distance(query, vectors_[entry_]), entry_});
	descend(*this, query, entry_points_, max_level_, level, 1, scratch_, levels_.size(), found_);
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

uint32_t
BuildGraph::connect_unreachable()
{
	std::vector<uint32_t> items;
	for (uint32_t id = 0; id < size(); id++)
		if (present_[id])
			items.push_back(id);
	return hannoy::connect_unreachable(*this, items, entry_, max_level_, m0_, ef_construction_, size());
}

void
BuildGraph::set_link(uint32_t target, size_t slot, uint32_t id, float dist)
{
	List l = list(target, 0);
	l.ids[slot] = id;
	l.dists[slot] = dist;
	if (slot == *l.count)
		(*l.count)++;
}

void
BuildGraph::write_links(IndexStore &store, uint32_t chunk,
						const std::function<void(uint32_t done)> &between_chunks)
{
	uint32_t n = size();
	std::vector<uint32_t> ids;
	for (uint32_t start = 0; start < n; start += chunk) {
		uint32_t end = std::min(n, start + chunk);
		lmdb::run_write(store.env(), [&](lmdb::Txn &txn) {
			StoreWriter writer(store, txn);
			for (uint32_t id = start; id < end; id++) {
				if (!present_[id])
					continue;
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
