/*
 * verify.cpp: structural verification of an index file (see verify.hpp).
 */
#include "verify.hpp"

#include <algorithm>
#include <unordered_map>

#include "hnsw.hpp"

#include "../pure_cpp.hpp"

namespace hannoy
{

namespace
{

constexpr size_t kMaxProblems = 50;

class Reporter
{
public:
	explicit Reporter(VerifyReport &report) : report_(report) {}
	void problem(const char *text)
	{
		if (report_.problems.size() < kMaxProblems)
			report_.problems.push_back(text);
	}
	template <typename First, typename... Rest> void problem(const char *fmt, First first, Rest... rest)
	{
		if (report_.problems.size() < kMaxProblems)
			report_.problems.push_back(format(fmt, first, rest...));
	}

private:
	VerifyReport &report_;
};

} // namespace

VerifyReport
verify_store(IndexStore &store, bool check_reachability)
{
	VerifyReport report;
	Reporter r(report);
	lmdb::Txn txn(store.env(), true);
	StoreReader reader(store, txn);
	IndexMeta meta = reader.meta();
	report.max_level = meta.max_level;
	Bitmap tombstones = reader.tombstones();
	report.tombstoned = tombstones.cardinality();
	if (meta.params.quantization == Quantization::Binary && meta.params.dims != 0 &&
		reader.centroid().size() != meta.params.dims)
		r.problem("the centroid of the binary codes is missing or has the wrong size");
	uint32_t m = meta.params.m;

	/* Items: level and TIDs; remember levels for the link checks. */
	std::unordered_map<uint32_t, uint8_t> levels;
	{
		lmdb::Cursor cursor(txn, store.items_dbi());
		MDB_val k, v;
		for (bool ok = cursor.seek(nullptr, 0, &k, &v); ok; ok = cursor.next(&k, &v)) {
			uint32_t id = decode_item_key(k.mv_data, k.mv_size);
			ItemRecord item = decode_item(v.mv_data, v.mv_size);
			report.items++;
			levels[id] = item.level;
			if (id >= meta.next_item)
				r.problem("item %u is beyond next_item %u", id, meta.next_item);
			if (item.tids.empty())
				r.problem("item %u has no heap TID", id);
			if (tombstones.contains(id))
				r.problem("item %u is both live and tombstoned", id);
			if (!reader.vector(id))
				r.problem("item %u has no vector", id);
			if (meta.params.quantization == Quantization::Binary && reader.code(id) == nullptr)
				r.problem("item %u has no binary code", id);
			for (const HeapTid &tid : item.tids) {
				uint32_t mapped;
				if (!reader.item_for_tid(tid, &mapped))
					r.problem("TID (%u,%u) of item %u is missing from the TID map", tid.block, tid.offset,
							  id);
				else if (mapped != id)
					r.problem("TID (%u,%u) of item %u maps to item %u", tid.block, tid.offset, id, mapped);
			}
			if (item.level != draw_level(meta.level_seed, id, m))
				r.problem("item %u has level %u, expected %u", id, item.level,
						  draw_level(meta.level_seed, id, m));
		}
	}
	/* Vector blocks: each header names the encoding the record's size implies (readers go by
	 * the size alone). */
	{
		lmdb::Cursor cursor(txn, store.vectors_dbi());
		MDB_val k, v;
		for (bool ok = cursor.seek(nullptr, 0, &k, &v); ok; ok = cursor.next(&k, &v)) {
			uint32_t block = decode_item_key(k.mv_data, k.mv_size);
			try {
				decode_block_header(v.mv_data, v.mv_size, meta.vectors_per_block, meta.vector_bytes,
									meta.params.dims, store.path(), block);
			} catch (const Error &e) {
				r.problem("%s", e.what());
			}
		}
	}
	/* Hashes: exactly one entry per live item, under the hash of its vector. */
	{
		uint64_t entries = 0;
		lmdb::Cursor cursor(txn, store.hashes_dbi());
		MDB_val k, v;
		for (bool ok = cursor.seek(nullptr, 0, &k, &v); ok; ok = cursor.next(&k, &v)) {
			uint64_t hash;
			uint32_t id;
			decode_hash_key(k.mv_data, k.mv_size, &hash, &id);
			entries++;
			VectorRef vector = reader.vector(id);
			if (levels.find(id) == levels.end())
				r.problem("hash entry of item %u, which is not a live item", id);
			else if (!vector || stored_vector_hash(vector, meta.vector_bytes, meta.params.dims) != hash)
				r.problem("hash entry of item %u does not match its vector", id);
		}
		if (entries != report.items)
			r.problem("%llu hash entries for %llu live items", static_cast<unsigned long long>(entries),
					  static_cast<unsigned long long>(report.items));
	}
	if (report.items != meta.live_items)
		r.problem("meta counts %llu live items, found %llu", static_cast<unsigned long long>(meta.live_items),
				  static_cast<unsigned long long>(report.items));

	/* TID map: every entry points at an item that lists it. */
	reader.for_each_tid(HeapTid{}, [&](HeapTid tid, uint32_t id) {
		report.tids++;
		ItemRecord item;
		if (!reader.item(id, &item)) {
			r.problem("TID (%u,%u) maps to missing item %u", tid.block, tid.offset, id);
			return true;
		}
		bool listed = false;
		for (const HeapTid &t : item.tids)
			listed = listed || t == tid;
		if (!listed)
			r.problem("TID (%u,%u) maps to item %u which does not list it", tid.block, tid.offset, id);
		return true;
	});

	/* Links: layers match levels, degrees within caps, no self-loops, no dangling ids. */
	std::unordered_map<uint32_t, uint32_t> layers_seen; /* item -> bitmask of layers (first 32) */
	std::vector<uint32_t> ids;
	{
		lmdb::Cursor cursor(txn, store.links_dbi());
		MDB_val k, v;
		for (bool ok = cursor.seek(nullptr, 0, &k, &v); ok; ok = cursor.next(&k, &v)) {
			uint32_t id;
			uint8_t layer;
			decode_link_key(k.mv_data, k.mv_size, &id, &layer);
			report.link_records++;
			ids.clear();
			try {
				decode_portable_ids(v.mv_data, v.mv_size, ids, "links");
			} catch (const Error &e) {
				r.problem("links of item %u layer %u: %s", id, layer, e.what());
				continue;
			}
			report.links += ids.size();
			bool dead = tombstones.contains(id);
			auto level = levels.find(id);
			if (level == levels.end() && !dead) {
				r.problem("links of item %u layer %u belong to no item", id, layer);
				continue;
			}
			if (level != levels.end() && layer > level->second)
				r.problem("item %u has links on layer %u above its level %u", id, layer, level->second);
			if (layer < 32)
				layers_seen[id] |= 1u << layer;
			uint32_t cap = layer == 0 ? 2 * m : m;
			if (ids.size() > cap)
				r.problem("item %u has %zu links on layer %u, more than %u", id, ids.size(), layer, cap);
			for (uint32_t n : ids) {
				if (n == id)
					r.problem("item %u links to itself on layer %u", id, layer);
				else if (!dead && tombstones.contains(n))
					continue; /* allowed until VACUUM purges the tombstone */
				else if (levels.find(n) == levels.end() && !tombstones.contains(n))
					r.problem("item %u links to missing item %u on layer %u", id, n, layer);
				else if (levels.count(n) && levels[n] < layer)
					r.problem("item %u links to item %u on layer %u above that item's level", id, n, layer);
			}
		}
	}
	for (const auto &entry : levels) {
		uint32_t expected = entry.second >= 31 ? 0xffffffffu : (2u << entry.second) - 1;
		if ((layers_seen[entry.first] & expected) != expected)
			r.problem("item %u lacks links on some of its layers 0..%u", entry.first, entry.second);
	}

	/* In-links: exactly the reverse of the lists. Every entry must be an edge, and there must
	 * be as many entries as edges (a bitmap holds no duplicates). */
	{
		uint64_t entries = 0;
		std::vector<uint32_t> sources, list;
		lmdb::Cursor cursor(txn, store.inlinks_dbi());
		MDB_val k, v;
		for (bool ok = cursor.seek(nullptr, 0, &k, &v); ok; ok = cursor.next(&k, &v)) {
			uint32_t id;
			uint8_t layer;
			decode_link_key(k.mv_data, k.mv_size, &id, &layer);
			sources.clear();
			try {
				decode_id_gaps(v.mv_data, v.mv_size, sources, "in-links");
			} catch (const Error &e) {
				r.problem("in-links of item %u layer %u: %s", id, layer, e.what());
				continue;
			}
			if (sources.empty())
				r.problem("in-links of item %u layer %u are an empty record", id, layer);
			entries += sources.size();
			for (uint32_t source : sources) {
				list.clear();
				reader.links(source, layer, list);
				if (std::find(list.begin(), list.end(), id) == list.end())
					r.problem("in-links say item %u links item %u on layer %u, its list does not", source, id,
							  layer);
			}
		}
		if (entries != report.links)
			r.problem("in-links hold %llu entries for %llu links", static_cast<unsigned long long>(entries),
					  static_cast<unsigned long long>(report.links));
	}

	/* Entry point. */
	if (report.items > 0 && meta.entry_point == kNoItem)
		r.problem("index has items but no entry point");
	if (meta.entry_point != kNoItem) {
		auto level = levels.find(meta.entry_point);
		if (level == levels.end() && !tombstones.contains(meta.entry_point))
			r.problem("entry point %u is not an item", meta.entry_point);
		else if (level != levels.end() && level->second != meta.max_level)
			r.problem("entry point %u has level %u, meta says %u", meta.entry_point, level->second,
					  meta.max_level);
	}

	/* Reachability: walk every layer down from the entry point; every live item must be met. */
	if (check_reachability && meta.entry_point != kNoItem) {
		VisitedSet seen;
		seen.reset(meta.next_item);
		std::vector<uint32_t> frontier{meta.entry_point};
		seen.test_and_set(meta.entry_point);
		for (int layer = meta.max_level; layer >= 0; layer--) {
			/* Restart from everything seen so far, on this layer. */
			std::vector<uint32_t> stack = frontier;
			while (!stack.empty()) {
				uint32_t id = stack.back();
				stack.pop_back();
				ids.clear();
				reader.links(id, static_cast<uint8_t>(layer), ids);
				for (uint32_t n : ids) {
					if (!seen.test_and_set(n)) {
						frontier.push_back(n);
						stack.push_back(n);
					}
				}
			}
		}
		uint32_t first_unreachable = kNoItem;
		for (const auto &entry : levels) {
			if (seen.contains(entry.first)) {
				report.reachable++;
			} else {
				report.unreachable++;
				first_unreachable = std::min(first_unreachable, entry.first);
			}
		}
		if (report.unreachable > 0)
			r.problem("%llu live items cannot be reached from the entry point (the first is item %u)",
					  static_cast<unsigned long long>(report.unreachable), first_unreachable);
	}
	txn.abort();
	return report;
}

} // namespace hannoy
