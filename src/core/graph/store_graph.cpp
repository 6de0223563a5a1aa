/*
 * store_graph.cpp: bulk loading, incremental insertion and scan-search state.
 */
#include "store_graph.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "../pure_cpp.hpp"

namespace hannoy
{

BulkLoader::BulkLoader(IndexStore &store, uint32_t *shared_blocks, size_t flush_bytes)
	: store_(store), shared_blocks_(shared_blocks), flush_bytes_(flush_bytes),
	  m_(store.cached_meta().params.m), level_seed_(store.cached_meta().level_seed)
{
}

void
BulkLoader::start_block()
{
	if (per_block_ == 0) {
		/* The dimension is known by the first row (a parallel load may fix it meanwhile). */
		vector_bytes_ = store_.cached_meta().vector_bytes;
		per_block_ = store_.cached_meta().vectors_per_block;
		if (vector_bytes_ == 0 || per_block_ == 0)
			throw Error(ErrorCode::Internal, "hannoy bulk load into a file without dimensions");
	}
	block_number_ =
		shared_blocks_ != nullptr ? __atomic_fetch_add(shared_blocks_, 1u, __ATOMIC_RELAXED) : next_block_++;
	if (block_number_ >= kNoItem / per_block_)
		throw Error(ErrorCode::LimitExceeded, "hannoy index cannot hold more than 4294967294 items");
	if (!spare_blocks_.empty()) {
		block_ = std::move(spare_blocks_.back());
		spare_blocks_.pop_back();
	} else {
		block_ = std::vector<uint8_t>();
		block_.reserve(kBlockHeaderBytes + static_cast<size_t>(vector_bytes_) * per_block_);
	}
	block_.assign(kBlockHeaderBytes, 0);
	in_block_ = 0;
}

uint32_t
BulkLoader::add(HeapTid tid, const uint8_t *vector)
{
	if (block_.empty())
		start_block();
	uint32_t id = block_number_ * per_block_ + in_block_++;
	added_++;
	block_.insert(block_.end(), vector, vector + vector_bytes_);
	if (in_block_ == per_block_) {
		full_blocks_.emplace_back(block_number_, std::move(block_));
		block_ = std::vector<uint8_t>();
	}
	pending_.emplace_back(tid, id);
	return id;
}

void
BulkLoader::maybe_flush()
{
	if (full_blocks_.size() * (kBlockHeaderBytes + static_cast<size_t>(vector_bytes_) * per_block_) >=
		flush_bytes_)
		flush(false);
}

void
BulkLoader::finish()
{
	flush(true);
}

void
BulkLoader::flush(bool final)
{
	const size_t block_bytes = kBlockHeaderBytes + static_cast<size_t>(vector_bytes_) * per_block_;
	if (final && !block_.empty()) {
		/* The last partial block: padded, its empty slots stay holes. */
		block_.resize(block_bytes, 0);
		full_blocks_.emplace_back(block_number_, std::move(block_));
		block_ = std::vector<uint8_t>();
	}
	std::sort(full_blocks_.begin(), full_blocks_.end(),
			  [](const auto &a, const auto &b) { return a.first < b.first; });
	/* Items whose block is written now: items are numbered within their block. */
	std::vector<uint32_t> written;
	for (const auto &b : full_blocks_)
		written.push_back(b.first);
	auto is_written = [&](uint32_t id) {
		return std::binary_search(written.begin(), written.end(), id / per_block_);
	};
	std::vector<std::pair<HeapTid, uint32_t>> items, keep;
	for (const auto &p : pending_)
		(is_written(p.second) ? items : keep).push_back(p);
	std::sort(items.begin(), items.end(), [](const auto &a, const auto &b) { return a.second < b.second; });
	std::vector<std::pair<HeapTid, uint32_t>> tids(items);
	std::sort(tids.begin(), tids.end(), [](const auto &a, const auto &b) { return a.first < b.first; });

	/* A sole loader writes keys in order (appends); loaders sharing a file interleave. */
	const unsigned append = shared_blocks_ == nullptr ? MDB_APPEND : 0;
	const IndexParams &params = store_.cached_meta().params;
	std::vector<uint8_t> record;
	lmdb::run_write(store_.env(), [&](lmdb::Txn &txn) {
		StoreWriter writer(store_, txn);
		for (const auto &b : full_blocks_) {
			auto key = block_key(b.first);
			encode_vector_block(b.second.data() + kBlockHeaderBytes, per_block_, vector_bytes_, params.dims,
								metric_uses_floats(params.metric), store_.env().page_size(), record);
			txn.put(store_.vectors_dbi(), key.data(), key.size(), record.data(), record.size(), append);
		}
		ItemRecord item;
		item.tids.resize(1);
		for (const auto &p : items) {
			item.level = draw_level(level_seed_, p.second, m_);
			item.tids[0] = p.first;
			auto key = item_key(p.second);
			std::string bytes = encode_item(item);
			txn.put(store_.items_dbi(), key.data(), key.size(), bytes.data(), bytes.size(), append);
		}
		for (const auto &p : tids)
			writer.put_tid(p.first, p.second);
	});
	/* Kept for the next blocks: fresh allocations of this size would be new pages to fault in. */
	for (auto &b : full_blocks_) {
		b.second.clear();
		spare_blocks_.push_back(std::move(b.second));
	}
	full_blocks_.clear();
	if (final)
		spare_blocks_ = {};
	pending_.swap(keep);
}

namespace
{

/* The stored graph with the two extra operations connect_unreachable() needs. */
class RepairGraph : public StoreGraph
{
public:
	RepairGraph(StoreReader &reader, StoreWriter *writer, const Traversal &traversal)
		: StoreGraph(reader, traversal), writer_(writer)
	{
	}
	void set_link(uint32_t target, size_t slot, uint32_t id, float)
	{
		ids_.clear();
		writer_->links(target, 0, ids_);
		if (slot >= ids_.size())
			ids_.push_back(id);
		else
			ids_[slot] = id;
		writer_->put_links(target, 0, ids_.data(), ids_.size());
	}

private:
	StoreWriter *writer_;
	std::vector<uint32_t> ids_;
};

std::vector<uint32_t>
live_items(StoreReader &reader)
{
	std::vector<uint32_t> items;
	lmdb::Cursor cursor(reader.txn(), reader.store().items_dbi());
	MDB_val k, v;
	for (bool ok = cursor.seek(nullptr, 0, &k, &v); ok; ok = cursor.next(&k, &v))
		items.push_back(decode_item_key(k.mv_data, k.mv_size));
	return items;
}

} // namespace

Inserter::Inserter(IndexStore &store) : store_(store) {}

uint32_t
reachability_check_interval(uint64_t live_items)
{
	uint64_t share = live_items / kReachabilityCheckShare;
	uint32_t interval = kMinReachabilityCheckInterval;
	while (interval <= share / 2 && interval < (1u << 30))
		interval <<= 1;
	return interval;
}

size_t
Inserter::insert(const std::vector<NewItem> &items, uint32_t dims)
{
	size_t added = 0;
	lmdb::run_write(store_.env(), [&](lmdb::Txn &txn) {
		StoreWriter writer(store_, txn);
		IndexMeta meta = writer.meta();
		if (meta.params.dims == 0 && dims != 0) {
			store_.set_dimensions(meta, dims);
			writer.put_meta(meta);
			/* Built empty: no data to centre the codes on yet. */
			if (meta.params.quantization == Quantization::Binary)
				writer.put_centroid(std::vector<float>(dims, 0.0f));
		} else if (meta.params.dims != dims) {
			throw Error(ErrorCode::DimensionMismatch,
						wrong_dimension_message(meta.params.metric, meta.params.dims, dims));
		}
		if (meta.params.metric == Metric::InnerProduct) {
			/* Items beyond the largest norm so far raise it, for this batch and later ones. */
			Space ip(Metric::InnerProduct, dims);
			for (const NewItem &item : items)
				meta.max_norm = std::max(meta.max_norm, std::sqrt(-ip.distance(item.vector, item.vector)));
		}
		traversal_ = Traversal::for_construction(meta);
		Bitmap tombstones = writer.tombstones();
		added = 0;
		checked_reachability_ = false;
		relinked_ = 0;
		dropped_.clear();
		const uint32_t first_new = meta.next_item;

		/* First decide what each row becomes: a row whose vector is already indexed (or appears
		 * earlier in this batch) joins that item; the others become new items, with
		 * consecutive ids so their vectors can be written one block at a time. */
		struct Fresh {
			uint32_t id;
			uint8_t level;
			ItemRecord record;
			uint64_t hash;
		};
		std::vector<Fresh> fresh;
		std::vector<const uint8_t *> fresh_vectors;
		std::unordered_multimap<uint64_t, size_t> fresh_by_hash;
		for (const NewItem &item : items) {
			uint32_t existing;
			if (writer.item_for_tid(item.tid, &existing))
				continue;
			added++;
			ItemRecord record;
			uint32_t twin = writer.find_identical(item.vector, kMaxTidsPerItem, &record);
			if (twin != kNoItem) {
				record.tids.push_back(item.tid);
				writer.put_item(twin, record);
				writer.put_tid(item.tid, twin);
				continue;
			}
			uint64_t hash = vector_hash(item.vector, meta.vector_bytes);
			bool joined = false;
			auto range = fresh_by_hash.equal_range(hash);
			for (auto it = range.first; it != range.second && !joined; ++it) {
				Fresh &candidate = fresh[it->second];
				if (candidate.record.tids.size() < kMaxTidsPerItem &&
					std::memcmp(fresh_vectors[it->second], item.vector, meta.vector_bytes) == 0) {
					candidate.record.tids.push_back(item.tid);
					joined = true;
				}
			}
			if (joined)
				continue;
			if (meta.next_item == kNoItem)
				throw Error(ErrorCode::LimitExceeded, "hannoy index ran out of item ids", "",
							"REINDEX the index to renumber its items.");
			Fresh f;
			f.id = meta.next_item++;
			f.level = draw_level(meta.level_seed, f.id, meta.params.m);
			f.record.level = f.level;
			f.record.tids.push_back(item.tid);
			f.hash = hash;
			fresh_by_hash.emplace(hash, fresh.size());
			fresh.push_back(std::move(f));
			fresh_vectors.push_back(item.vector);
		}

		/* Then write: vectors and codes block by block, items, TIDs and hashes. Linking
		 * afterwards only reads these blocks, so its pointers into them stay valid. */
		if (!fresh.empty()) {
			std::vector<uint8_t> packed(fresh.size() * meta.vector_bytes);
			for (size_t i = 0; i < fresh.size(); i++)
				std::memcpy(packed.data() + i * meta.vector_bytes, fresh_vectors[i], meta.vector_bytes);
			writer.put_vectors(fresh.front().id, static_cast<uint32_t>(fresh.size()), packed.data());
			if (traversal_.codes) {
				std::vector<uint8_t> codes(fresh.size() * meta.code_bytes);
				for (size_t i = 0; i < fresh.size(); i++)
					binary_quantize_centered(reinterpret_cast<const float *>(fresh_vectors[i]),
											 store_.centroid().data(), dims,
											 codes.data() + i * meta.code_bytes);
				writer.put_codes(fresh.front().id, static_cast<uint32_t>(fresh.size()), codes.data());
			}
		}
		for (const Fresh &f : fresh) {
			writer.put_item(f.id, f.record);
			for (const HeapTid &tid : f.record.tids)
				writer.put_tid(tid, f.id);
			writer.put_hash(f.hash, f.id);
		}

		/* Link using the stored copies: aligned, and what later searches will compare. */
		/* Counted one by one: link() starts a new graph when no live item exists yet. */
		for (const Fresh &f : fresh) {
			link(writer, meta, tombstones, f.id, f.level,
				 traversal_.codes ? VectorRef{writer.code(f.id), Encoding::Raw} : writer.vector(f.id));
			meta.live_items++;
		}

		/* Pruning a full list can take away an item's last incoming link: the in-links tell,
		 * and such items are linked again before the batch commits. */
		relinked_ = link_orphans(writer, meta, tombstones, dropped_);
		/* Items can also end up in a cycle that nothing outside links to, which only a walk of
		 * the whole graph finds: the batch whose new ids cross a multiple of the check interval
		 * (about 1/16 of the index) walks it, so the walks cost a few list reads per insert. */
		uint32_t interval = reachability_check_interval(meta.live_items);
		if (meta.next_item != first_new && first_new / interval != meta.next_item / interval &&
			meta.entry_point != kNoItem) {
			RepairGraph graph(writer, &writer, traversal_);
			relinked_ += connect_unreachable(graph, live_items(writer), meta.entry_point, meta.max_level,
											 2u * meta.params.m, meta.params.ef_construction, meta.next_item);
			writer.put_purged_since_walk(0);
			checked_reachability_ = true;
		}
		meta.seq++;
		writer.put_meta(meta);
	});
	return added;
}

void
Inserter::link(StoreWriter &writer, IndexMeta &meta, const Bitmap &tombstones, uint32_t id, uint8_t level,
			   VectorRef vector)
{
	StoreGraph graph(writer, traversal_);
	const uint32_t m = meta.params.m;
	std::vector<uint32_t> none;

	/* No live item to link to: this item starts the graph afresh. */
	if (meta.entry_point == kNoItem || meta.live_items == 0) {
		for (int layer = 0; layer <= level; layer++)
			writer.put_links(id, static_cast<uint8_t>(layer), none.data(), 0);
		meta.entry_point = id;
		meta.max_level = level;
		return;
	}

	auto accept = [&](uint32_t candidate) { return candidate != id && !tombstones.contains(candidate); };
	float d;
	if (!graph.distance_to(vector, meta.entry_point, &d))
		throw Error(ErrorCode::Corrupted, "hannoy index entry point has no vector", "", "REINDEX the index.");
	entry_points_.assign(1, Candidate{d, meta.entry_point});
	descend(graph, vector, entry_points_, meta.max_level, level, kUpperLayerBeam, scratch_, meta.next_item,
			found_);
	for (int layer = std::min<int>(level, meta.max_level); layer >= 0; layer--) {
		uint8_t l = static_cast<uint8_t>(layer);
		uint32_t cap = l == 0 ? 2 * m : m;
		search_layer(graph, vector, entry_points_, meta.params.ef_construction, l, accept, scratch_,
					 meta.next_item, found_);
		select_neighbors(graph, found_, cap, selected_);
		ids_.clear();
		for (const Candidate &c : selected_)
			ids_.push_back(c.id);
		writer.put_links(id, l, ids_.data(), ids_.size());
		std::vector<Candidate> chosen = selected_;
		bool linked_in = false;
		for (const Candidate &c : chosen)
			linked_in = add_reverse_link(writer, graph, tombstones, c.id, l, id, c.dist) || linked_in;
		/* Every neighbour preferred closer ones: without an incoming link on layer 0 the item
		 * could never be found, so its nearest neighbour takes it in anyway. */
		if (l == 0 && !linked_in && !chosen.empty())
			force_reverse_link(writer, graph, chosen.front().id, id);
		if (!found_.empty())
			entry_points_.swap(found_);
	}
	for (int layer = meta.max_level + 1; layer <= level; layer++)
		writer.put_links(id, static_cast<uint8_t>(layer), none.data(), 0);
	if (level > meta.max_level) {
		meta.entry_point = id;
		meta.max_level = level;
	}
}

bool
Inserter::add_reverse_link(StoreWriter &writer, StoreGraph &graph, const Bitmap &tombstones, uint32_t target,
						   uint8_t layer, uint32_t id, float dist)
{
	uint32_t cap = layer == 0 ? 2u * store_.cached_meta().params.m : store_.cached_meta().params.m;
	ids_.clear();
	if (!writer.links(target, layer, ids_))
		return false;
	if (std::find(ids_.begin(), ids_.end(), id) != ids_.end())
		return true;
	if (ids_.size() < cap) {
		ids_.push_back(id);
		writer.put_links(target, layer, ids_.data(), ids_.size());
		return true;
	}
	/* Full: re-select over the current list (as it is now, under the writer lock) plus the
	 * new node, dropping deleted neighbours. */
	prune_.clear();
	for (uint32_t neighbor : ids_) {
		if (tombstones.contains(neighbor))
			continue;
		prune_.push_back(Candidate{graph.distance_between(target, neighbor), neighbor});
	}
	prune_.push_back(Candidate{dist, id});
	std::sort(prune_.begin(), prune_.end(), closer);
	select_neighbors(graph, prune_, cap, selected_);
	ids_.clear();
	bool kept = false;
	for (const Candidate &c : selected_) {
		ids_.push_back(c.id);
		kept = kept || c.id == id;
	}
	if (layer == 0)
		for (const Candidate &c : prune_)
			if (std::find(ids_.begin(), ids_.end(), c.id) == ids_.end())
				dropped_.push_back(c.id);
	writer.put_links(target, layer, ids_.data(), ids_.size());
	return kept;
}

void
Inserter::force_reverse_link(StoreWriter &writer, StoreGraph &graph, uint32_t target, uint32_t id)
{
	ids_.clear();
	if (!writer.links(target, 0, ids_) || ids_.empty())
		return;
	/* Replace the farthest neighbour: the one the pruning rule valued least. */
	size_t farthest = 0;
	float farthest_dist = -1.0f;
	for (size_t i = 0; i < ids_.size(); i++) {
		float d = graph.distance_between(target, ids_[i]);
		if (d > farthest_dist) {
			farthest_dist = d;
			farthest = i;
		}
	}
	dropped_.push_back(ids_[farthest]);
	ids_[farthest] = id;
	writer.put_links(target, 0, ids_.data(), ids_.size());
}

uint32_t
count_unreachable(IndexStore &store)
{
	lmdb::Txn txn(store.env(), true);
	StoreReader reader(store, txn);
	IndexMeta meta = reader.meta();
	if (meta.entry_point == kNoItem || meta.params.dims == 0)
		return 0;
	RepairGraph graph(reader, nullptr, Traversal::for_construction(meta));
	return connect_unreachable(graph, live_items(reader), meta.entry_point, meta.max_level,
							   2u * meta.params.m, meta.params.ef_construction, meta.next_item, true);
}

uint32_t
repair_reachability(IndexStore &store)
{
	uint32_t added = 0;
	lmdb::run_write(store.env(), [&](lmdb::Txn &txn) {
		StoreWriter writer(store, txn);
		IndexMeta meta = writer.meta();
		if (meta.entry_point == kNoItem || meta.params.dims == 0)
			return;
		RepairGraph graph(writer, &writer, Traversal::for_construction(meta));
		added = connect_unreachable(graph, live_items(writer), meta.entry_point, meta.max_level,
									2u * meta.params.m, meta.params.ef_construction, meta.next_item);
		writer.put_purged_since_walk(0);
		if (added > 0) {
			meta.seq++;
			writer.put_meta(meta);
		}
	});
	return added;
}

namespace
{

/* Work per write transaction of a repair. Each commit syncs every page it dirtied, and the
 * lists (and in-links) a repair touches are spread over the whole file: small steps would
 * write the same pages again and again. These hold the writer for tens of milliseconds. */
constexpr size_t kListsPerRepairStep = 8192; /* lists linking deleted items, rewritten */
constexpr size_t kDeadPerPurgeStep = 2048;   /* deleted items purged */

/* The live item with the highest level, or kNoItem. */
uint32_t
highest_live_item(StoreReader &reader, uint8_t *level, uint64_t *records_read)
{
	uint32_t best = kNoItem;
	*level = 0;
	lmdb::Cursor cursor(reader.txn(), reader.store().items_dbi());
	MDB_val k, v;
	for (bool ok = cursor.seek(nullptr, 0, &k, &v); ok; ok = cursor.next(&k, &v)) {
		++*records_read;
		ItemRecord item = decode_item(v.mv_data, v.mv_size);
		if (best == kNoItem || item.level > *level) {
			best = decode_item_key(k.mv_data, k.mv_size);
			*level = item.level;
		}
	}
	return best;
}

/* The item to replace a deleted entry point: the live item of highest level met by a
 * breadth-first walk of the old entry point's neighbourhood, layer by layer from its own
 * level down, over links both ways (the deleted items still hold their lists). The upper
 * layers hold few items, so this reads a handful of lists where a scan of every item would
 * read them all; the scan remains for a neighbourhood with nothing live in reach. */
uint32_t
replacement_entry_point(StoreWriter &writer, const Bitmap &dead, uint32_t old_entry, uint8_t old_level,
						uint8_t *level, uint64_t *records_read)
{
	constexpr size_t kVisitBudget = 4096; /* per layer */
	std::vector<uint32_t> frontier, next, lists;
	std::unordered_set<uint32_t> seen;
	for (int layer = old_level; layer >= 0; layer--) {
		uint32_t best = kNoItem;
		uint8_t best_level = 0;
		seen.clear();
		seen.insert(old_entry);
		frontier.assign(1, old_entry);
		while (!frontier.empty() && seen.size() < kVisitBudget) {
			next.clear();
			for (uint32_t id : frontier) {
				lists.clear();
				writer.links(id, static_cast<uint8_t>(layer), lists);
				writer.in_links(id, static_cast<uint8_t>(layer), lists);
				*records_read += 2;
				for (uint32_t n : lists) {
					if (!seen.insert(n).second)
						continue;
					next.push_back(n);
					ItemRecord item;
					++*records_read;
					if (dead.contains(n) || !writer.item(n, &item))
						continue;
					if (best == kNoItem || item.level > best_level) {
						best = n;
						best_level = item.level;
					}
				}
			}
			frontier.swap(next);
		}
		if (best != kNoItem) {
			*level = best_level;
			return best;
		}
	}
	return highest_live_item(writer, level, records_read);
}

/* Rebuilds the list of (id, layer) without its dead neighbours. The live neighbours all stay:
 * dropping one would take an incoming link from an item that did nothing wrong. The dead
 * ones' places go to their own live neighbours: first those the pruning heuristic keeps next
 * to the list (diverse directions, as the deleted item provided), then the closest, up to the
 * list's former length. Returns false when the list had no dead neighbour. */
bool
rewrite_without_dead(StoreWriter &writer, StoreGraph &graph, const IndexMeta &meta, const Bitmap &dead,
					 uint32_t id, uint8_t layer)
{
	std::vector<uint32_t> list, theirs, kept, extra;
	std::vector<Candidate> candidates;
	if (!writer.links(id, layer, list))
		return false;
	for (uint32_t n : list) {
		if (!dead.contains(n)) {
			kept.push_back(n);
			continue;
		}
		theirs.clear();
		writer.links(n, layer, theirs);
		for (uint32_t m : theirs)
			if (m != id && !dead.contains(m))
				extra.push_back(m);
	}
	if (kept.size() == list.size())
		return false;
	std::vector<uint32_t> merged = kept;
	std::sort(kept.begin(), kept.end());
	std::sort(extra.begin(), extra.end());
	extra.erase(std::unique(extra.begin(), extra.end()), extra.end());
	extra.erase(std::remove_if(extra.begin(), extra.end(),
							   [&](uint32_t n) { return std::binary_search(kept.begin(), kept.end(), n); }),
				extra.end());
	uint32_t cap = layer == 0 ? 2u * meta.params.m : meta.params.m;
	size_t target = std::min<size_t>(cap, list.size());
	size_t slots = target > merged.size() ? target - merged.size() : 0;
	if (extra.size() <= slots) {
		merged.insert(merged.end(), extra.begin(), extra.end());
	} else if (slots > 0) {
		for (uint32_t n : extra)
			candidates.push_back(Candidate{graph.distance_between(id, n), n});
		std::sort(candidates.begin(), candidates.end(), closer);
		std::vector<bool> taken(candidates.size(), false);
		size_t added = 0;
		for (size_t c = 0; c < candidates.size() && added < slots; c++) {
			bool keep = true;
			for (size_t k = 0; k < merged.size() && keep; k++)
				keep = graph.distance_between(candidates[c].id, merged[k]) >= candidates[c].dist;
			if (keep) {
				merged.push_back(candidates[c].id);
				taken[c] = true;
				added++;
			}
		}
		for (size_t c = 0; c < candidates.size() && added < slots; c++) {
			if (!taken[c]) {
				merged.push_back(candidates[c].id);
				added++;
			}
		}
	}
	writer.put_links(id, layer, merged.data(), merged.size());
	return true;
}

/* Calls fn(source, layer) for each live item whose list on `layer` links `id`, layer by layer
 * up to the first that has neither a list of `id` nor in-links to it. Returns the in-link
 * records read. */
template <typename Fn>
uint64_t
for_each_live_in_link(StoreWriter &writer, const Bitmap &dead, uint32_t id, Fn &&fn)
{
	std::vector<uint32_t> sources, list;
	uint64_t read = 0;
	for (uint8_t layer = 0; layer <= kMaxLevel; layer++) {
		sources.clear();
		writer.in_links(id, layer, sources);
		read++;
		for (uint32_t source : sources)
			if (!dead.contains(source))
				fn(source, layer);
		list.clear();
		if (sources.empty() && !writer.links(id, layer, list))
			break;
	}
	return read;
}

} // namespace

uint32_t
link_orphans(StoreWriter &writer, const IndexMeta &meta, const Bitmap &dead, std::vector<uint32_t> candidates)
{
	/* A deleted entry point still leads the way: deleted items stay traversable until purged. */
	if (meta.entry_point == kNoItem)
		return 0;
	std::sort(candidates.begin(), candidates.end());
	candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
	StoreGraph graph(writer, Traversal::for_construction(meta));
	const uint32_t cap = 2u * meta.params.m;
	auto live_in_degree = [&](uint32_t id) {
		std::vector<uint32_t> in;
		writer.in_links(id, 0, in);
		uint32_t live = 0;
		for (uint32_t source : in)
			live += dead.contains(source) ? 0 : 1;
		return live;
	};
	SearchScratch scratch;
	std::vector<Candidate> entry_points, found;
	std::vector<uint32_t> list;
	uint32_t linked = 0;
	for (uint32_t id : candidates) {
		if (id == meta.entry_point || dead.contains(id) || !writer.has_item(id) || live_in_degree(id) > 0)
			continue;
		VectorRef query = graph.vector(id);
		float d;
		if (!query || !graph.distance_to(query, meta.entry_point, &d))
			continue;
		/* Every node this search meets is reachable from the entry point, so linking the orphan
		 * from one of them makes it reachable too. */
		entry_points.assign(1, Candidate{d, meta.entry_point});
		descend(graph, query, entry_points, meta.max_level, 0, 1, scratch, meta.next_item, found);
		/* A deleted node may have lost its lists already: start from live ones, and the entry. */
		entry_points.erase(std::remove_if(entry_points.begin(), entry_points.end(),
										  [&](const Candidate &c) { return dead.contains(c.id); }),
						   entry_points.end());
		entry_points.push_back(Candidate{d, meta.entry_point});
		auto accept = [&](uint32_t n) { return n != id && !dead.contains(n); };
		search_layer(graph, query, entry_points, meta.params.ef_construction, 0, accept, scratch,
					 meta.next_item, found);
		for (const Candidate &c : found) {
			list.clear();
			if (!writer.links(c.id, 0, list))
				continue;
			if (list.size() < cap) {
				list.push_back(id);
			} else {
				/* In place of the neighbour most others link to (never the only link of one). */
				size_t victim = list.size();
				uint32_t victim_in = 1;
				for (size_t i = 0; i < list.size(); i++) {
					uint32_t in = dead.contains(list[i]) ? 0 : live_in_degree(list[i]);
					if (in > victim_in) {
						victim = i;
						victim_in = in;
					}
				}
				if (victim == list.size())
					continue;
				list[victim] = id;
			}
			writer.put_links(c.id, 0, list.data(), list.size());
			linked++;
			break;
		}
	}
	return linked;
}

RepairStats
repair_deleted(IndexStore &store, WriteGate &gate)
{
	RepairStats stats;
	Bitmap dead;
	IndexMeta meta;
	{
		lmdb::Txn txn(store.env(), true);
		StoreReader reader(store, txn);
		meta = reader.meta();
		dead = reader.tombstones();
	}
	if (dead.empty())
		return stats;

	/* 1. The entry point first, so searches never start from a node about to vanish. */
	if (meta.entry_point != kNoItem && dead.contains(meta.entry_point)) {
		gate.before_write();
		lmdb::run_write(store.env(), [&](lmdb::Txn &txn) {
			StoreWriter writer(store, txn);
			IndexMeta current = writer.meta();
			if (current.entry_point != kNoItem && dead.contains(current.entry_point)) {
				stats.entry_point_records_read = 0;
				current.entry_point =
					replacement_entry_point(writer, dead, current.entry_point, current.max_level,
											&current.max_level, &stats.entry_point_records_read);
				if (current.entry_point == kNoItem)
					current.max_level = 0;
				current.seq++;
				writer.put_meta(current);
			}
		});
		gate.after_write();
		stats.entry_point_replaced = true;
		gate.between_steps();
	}

	/* 2. The live lists that link deleted items, found through the deleted items' in-links,
	 * are rewritten without them, a chunk of deleted items at a time. Nothing else is read.
	 * The deleted items keep their own lists meanwhile: searches running between two chunks
	 * may still pass through them. */
	std::vector<uint32_t> purge = dead.to_vector();
	for (size_t start = 0, end = 0; start < purge.size(); start = end) {
		RepairStats step;
		gate.before_write();
		lmdb::run_write(store.env(), [&](lmdb::Txn &txn) {
			step = RepairStats();
			StoreWriter writer(store, txn);
			IndexMeta current = writer.meta();
			StoreGraph graph(writer, Traversal::for_construction(current));
			std::vector<std::pair<uint32_t, uint8_t>> affected;
			for (end = start; end < purge.size() && affected.size() < kListsPerRepairStep; end++) {
				step.lists_read +=
					for_each_live_in_link(writer, dead, purge[end], [&](uint32_t source, uint8_t layer) {
						affected.emplace_back(source, layer);
					});
			}
			std::sort(affected.begin(), affected.end());
			affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
			for (const auto &[id, layer] : affected)
				if (rewrite_without_dead(writer, graph, current, dead, id, layer))
					step.lists_rewritten++;
			if (step.lists_rewritten > 0) {
				current.seq++;
				writer.put_meta(current);
			}
		});
		gate.after_write();
		stats.lists_read += step.lists_read;
		stats.lists_rewritten += step.lists_rewritten;
		gate.between_steps();
	}

	/* 3. No live list links a deleted item any more: their lists and tombstones go, and a live
	 * item whose last incoming link came from one of them is linked again. */
	for (size_t start = 0; start < purge.size(); start += kDeadPerPurgeStep) {
		size_t end = std::min(purge.size(), start + kDeadPerPurgeStep);
		uint32_t relinked = 0;
		gate.before_write();
		lmdb::run_write(store.env(), [&](lmdb::Txn &txn) {
			StoreWriter writer(store, txn);
			IndexMeta current = writer.meta();
			Bitmap tombstones = writer.tombstones();
			StoreGraph graph(writer, Traversal::for_construction(current));
			std::vector<uint32_t> list, orphan_candidates;
			for (size_t i = start; i < end; i++) {
				/* A live list that took the item back since step 2 (none should) is rewritten
				 * now: no live item ever links a purged one. */
				for_each_live_in_link(writer, dead, purge[i], [&](uint32_t source, uint8_t layer) {
					rewrite_without_dead(writer, graph, current, dead, source, layer);
				});
				list.clear();
				writer.links(purge[i], 0, list);
				for (uint32_t n : list)
					if (!dead.contains(n))
						orphan_candidates.push_back(n);
				for (uint8_t layer = 0; layer <= kMaxLevel; layer++)
					if (!writer.delete_links_if_present(purge[i], layer))
						break;
				if (tombstones.contains(purge[i])) {
					tombstones.remove(purge[i]);
					current.tombstoned_items--;
				}
			}
			writer.put_tombstones(tombstones);
			relinked = link_orphans(writer, current, dead, orphan_candidates);
			uint64_t purged = writer.purged_since_walk() + (end - start);
			writer.put_purged_since_walk(purged);
			stats.walk_due = purged * kReachabilityCheckShare >= current.live_items;
			current.seq++;
			writer.put_meta(current);
		});
		gate.after_write();
		stats.items_purged += end - start;
		stats.orphans_relinked += relinked;
		gate.between_steps();
	}
	return stats;
}

size_t
delete_tids(IndexStore &store, const std::vector<HeapTid> &tids)
{
	size_t deleted = 0;
	lmdb::run_write(store.env(), [&](lmdb::Txn &txn) {
		StoreWriter writer(store, txn);
		IndexMeta meta = writer.meta();
		Bitmap tombstones = writer.tombstones();
		deleted = 0;
		for (const HeapTid &tid : tids) {
			uint32_t id;
			if (!writer.item_for_tid(tid, &id))
				continue;
			writer.delete_tid(tid);
			ItemRecord item;
			if (!writer.item(id, &item))
				continue;
			item.tids.erase(std::remove(item.tids.begin(), item.tids.end(), tid), item.tids.end());
			if (!item.tids.empty()) {
				writer.put_item(id, item);
				continue;
			}
			VectorRef vector = writer.vector(id);
			if (vector)
				writer.delete_hash(stored_vector_hash(vector, meta.vector_bytes, meta.params.dims), id);
			writer.delete_item(id);
			tombstones.add(id);
			meta.live_items--;
			meta.tombstoned_items++;
			deleted++;
		}
		writer.put_tombstones(tombstones);
		meta.seq++;
		writer.put_meta(meta);
	});
	return deleted;
}

ScanSearch::ScanSearch(const Traversal &traversal, const uint8_t *query, uint32_t ef, bool strict)
	: traversal_(traversal), query_(traversal.space.bytes()), ef_(ef == 0 ? 1 : ef), strict_(strict)
{
	std::memcpy(query_.data(), query, traversal.space.bytes());
}

ScanCursor::ScanCursor(const IndexMeta &meta, const std::vector<float> &centroid, const uint8_t *query,
					   uint32_t dims, uint32_t ef)
	: exact_(meta.params.metric, dims), query_(exact_.bytes()), rerank_(false)
{
	/* Same words as the distance operators, which a sequential scan would run. */
	if (meta.params.dims != 0 && meta.params.dims != dims)
		throw Error(ErrorCode::DimensionMismatch,
					different_dimensions_message(meta.params.metric, meta.params.dims, dims));
	if (meta.params.dims == 0)
		return; /* empty index: nothing to find */
	std::memcpy(query_.data(), query, exact_.bytes());
	Traversal traversal = Traversal::of(meta);
	if (!traversal.codes) {
		search_ = std::make_unique<ScanSearch>(traversal, query, ef);
		return;
	}
	rerank_ = true;
	std::vector<uint8_t> code(traversal.space.bytes());
	binary_quantize_centered(reinterpret_cast<const float *>(query),
							 centroid.empty() ? nullptr : centroid.data(), dims, code.data());
	search_ = std::make_unique<ScanSearch>(traversal, code.data(), ef * kQuantizedBeamFactor, false);
}

void
ScanSearch::push_result(const Candidate &c)
{
	results_.push_back(c);
	std::push_heap(results_.begin(), results_.end(), FarthestOnTop());
	if (results_.size() > ef_) {
		std::pop_heap(results_.begin(), results_.end(), FarthestOnTop());
		results_.pop_back();
	}
}

} // namespace hannoy
