/*
 * hannoy_vacuum.cpp: ambulkdelete and amvacuumcleanup.
 *
 * VACUUM hands over dead heap TIDs through a callback. The TID map is read in chunks, one
 * short read transaction each; the callback runs outside any LMDB transaction; deletions are
 * applied in chunks under the writer lock, with vacuum_delay_point() between chunks, so the
 * LMDB writer is never held for the whole vacuum. Deleted items are tombstoned: never
 * returned again, still traversable until the graph is repaired around them. The cleanup
 * pass repairs the lists that link deleted items (found through their in-links) and relinks
 * live items the deletions left unreachable.
 */
#include "hannoy.hpp"

#include <vector>

#include "core/graph/store_graph.hpp"

namespace hannoy::pg
{

namespace
{

constexpr size_t kTidsPerChunk = 10000;

/* Each write step of a repair takes the index's writer lock; between steps VACUUM can be
 * cancelled or throttled by vacuum_cost_delay. */
class VacuumWriteGate : public WriteGate
{
public:
	explicit VacuumWriteGate(Relation index) : index_(index) {}
	void before_write() override { lock_index_writer(index_); }
	void after_write() override { unlock_index_writer(index_); }
	void between_steps() override
	{
		pg_call([] { vacuum_delay_point(); });
	}

private:
	Relation index_;
};

IndexBulkDeleteResult *
bulk_delete_impl(IndexVacuumInfo *info, IndexBulkDeleteResult *stats, IndexBulkDeleteCallback callback,
				 void *callback_state)
{
	if (stats == nullptr)
		stats = pg_call(
			[] { return static_cast<IndexBulkDeleteResult *>(palloc0(sizeof(IndexBulkDeleteResult))); });
	IndexStore &store = open_index_store(info->index);

	std::vector<HeapTid> dead;
	std::vector<HeapTid> chunk;
	HeapTid from{0, 0};
	for (bool more = true; more;) {
		chunk.clear();
		/* More only if a TID beyond this chunk was seen: a full last chunk ends the scan. */
		more = false;
		{
			lmdb::Txn txn(store.env(), true);
			StoreReader reader(store, txn);
			reader.for_each_tid(from, [&](HeapTid tid, uint32_t) {
				if (chunk.size() == kTidsPerChunk) {
					from = tid;
					more = true;
					return false;
				}
				chunk.push_back(tid);
				return true;
			});
		}
		for (const HeapTid &tid : chunk) {
			ItemPointerData pointer;
			ItemPointerSet(&pointer, tid.block, tid.offset);
			if (pg_call([&] { return callback(&pointer, callback_state); }))
				dead.push_back(tid);
		}
		pg_call([] { vacuum_delay_point(); });
	}

	for (size_t start = 0; start < dead.size(); start += kTidsPerChunk) {
		std::vector<HeapTid> part(dead.begin() + start,
								  dead.begin() + std::min(dead.size(), start + kTidsPerChunk));
		lock_index_writer(info->index);
		delete_tids(store, part);
		unlock_index_writer(info->index);
		pg_call([] { vacuum_delay_point(); });
	}
	stats->tuples_removed += static_cast<double>(dead.size());
	stats->num_index_tuples = static_cast<double>(store.cached_meta().live_items);
	return stats;
}

IndexBulkDeleteResult *
vacuum_cleanup_impl(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	if (info->analyze_only)
		return stats;
	if (stats == nullptr)
		stats = pg_call(
			[] { return static_cast<IndexBulkDeleteResult *>(palloc0(sizeof(IndexBulkDeleteResult))); });
	IndexStore &store = open_index_store(info->index);
	/* Deleted items are unlinked and their neighbours relinked to each other, so the graph
	 * keeps its quality under churn and the file stops carrying them. */
	VacuumWriteGate gate(info->index);
	RepairStats repair = repair_deleted(store, gate);
	if (repair.items_purged > 0)
		pg_call([&] {
			ereport(
				info->message_level,
				(errmsg("index \"%s\": graph repaired around %llu deleted items, %llu link lists rewritten, "
						"%llu items relinked%s",
						RelationGetRelationName(info->index), (unsigned long long)repair.items_purged,
						(unsigned long long)repair.lists_rewritten,
						(unsigned long long)repair.orphans_relinked,
						repair.entry_point_replaced ? ", entry point replaced" : "")));
		});
	/* Items that only link each other (no live item outside links them) are found by a walk
	 * of the whole graph, run once every 1/16 of the index purged, or inserted, so that its
	 * cost stays proportional to the changes. */
	if (repair.walk_due) {
		uint32_t unreachable = count_unreachable(store);
		lock_index_writer(info->index);
		uint32_t links = repair_reachability(store);
		unlock_index_writer(info->index);
		if (unreachable > 0)
			pg_call([&] {
				ereport(info->message_level,
						(errmsg("index \"%s\": %u unreachable items relinked with %u links",
								RelationGetRelationName(info->index), unreachable, links)));
			});
	}
	IndexMeta meta;
	{
		lmdb::Txn txn(store.env(), true);
		meta = StoreReader(store, txn).meta();
	}
	store.env().clear_stale_readers();
	stats->num_index_tuples = static_cast<double>(meta.live_items);
	stats->estimated_count = false;
	/* The relation itself is one metapage, and that is what relpages reports: the planner's
	 * page costs would otherwise charge random I/O for a memory-mapped file. The storage
	 * file's size is reported by hannoy_index_info(). */
	stats->num_pages = pg_call([&] { return RelationGetNumberOfBlocks(info->index); });
	return stats;
}

} // namespace

IndexBulkDeleteResult *
bulk_delete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats, IndexBulkDeleteCallback callback,
			void *callback_state)
{
	return hannoy_guarded([&] { return bulk_delete_impl(info, stats, callback, callback_state); });
}

IndexBulkDeleteResult *
vacuum_cleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	return hannoy_guarded([&] { return vacuum_cleanup_impl(info, stats); });
}

} // namespace hannoy::pg
