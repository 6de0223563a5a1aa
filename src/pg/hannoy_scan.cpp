/*
 * hannoy_scan.cpp: index scans ordered by distance (ambeginscan, amrescan, amgettuple,
 * amendscan).
 *
 * A scan runs a beam search of width hannoy.ef_search and returns its results in order; when
 * the executor asks for more (a larger LIMIT, rows filtered out or invisible), the search
 * resumes with a wider beam instead of stopping. Each batch reads one LMDB snapshot and keeps
 * no pointer into the file between calls. The scan's C++ state belongs to the memory context
 * the scan was created in, so it is freed even when the query fails and amendscan is skipped.
 */
#include "hannoy.hpp"

#include <algorithm>
#include <memory>
#include <vector>

#include "core/graph/store_graph.hpp"

namespace hannoy::pg
{

namespace
{

struct ScanState {
	std::unique_ptr<ScanCursor> search;
	std::vector<Candidate> found; ///< results of the last batch, in order
	size_t resolved = 0;          ///< how many of them have had their TIDs queued
	size_t resolve_chunk = kFirstResolveChunk;
	std::vector<HeapTid> tids;
	size_t next = 0;
	bool done = false;

	/* A batch holds ef_search results while a query usually wants a LIMIT of a few: the
	 * TIDs of results are read a few at a time, more each time the executor asks again. */
	static constexpr size_t kFirstResolveChunk = 8;
	static constexpr size_t kMaxResolveChunk = 256;
};

struct ScanOpaque {
	ScanState *state;
	MemoryContextCallback release;
};

void
release_state(void *arg)
{
	ScanOpaque *opaque = static_cast<ScanOpaque *>(arg);
	delete opaque->state;
	opaque->state = nullptr;
}

ScanState *
start_scan(IndexScanDesc scan)
{
	Relation index = scan->indexRelation;
	if (scan->numberOfOrderBys == 0 || scan->orderByData == nullptr)
		throw Error(ErrorCode::InvalidInput, "hannoy index scans require ORDER BY a distance operator");
	pg_call([&] {
		if (!IsMVCCSnapshot(scan->xs_snapshot))
			ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							errmsg("hannoy index scans require an MVCC snapshot")));
		pgstat_count_index_scan(index);
	});
	auto state = std::make_unique<ScanState>();
	ScanKey key = scan->orderByData;
	if (key->sk_flags & SK_ISNULL) {
		/* Distances to NULL are NULL: there is no order to return rows in. */
		state->done = true;
		return state.release();
	}
	MemoryContext context = pg_call([] {
		return AllocSetContextCreate(CurrentMemoryContext, "hannoy scan query", ALLOCSET_SMALL_SIZES);
	});
	MemoryContext previous = MemoryContextSwitchTo(context);
	flush_pending_inserts(index); /* the scan sees this transaction's own rows */
	IndexStore &store = open_index_store(index);
	Metric metric = store.cached_meta().params.metric;
	VectorValue query = pg_call([&] { return vector_from_datum(key->sk_argument, metric); });
	AlignedBytes stored(vector_bytes(metric, query.dims));
	write_stored_vector(metric, query, stored.data());
	IndexMeta meta;
	{
		lmdb::Txn txn(store.env(), true);
		meta = StoreReader(store, txn).meta();
	}
	state->search = std::make_unique<ScanCursor>(meta, store.centroid(), stored.data(), query.dims,
												 static_cast<uint32_t>(ef_search));
	MemoryContextSwitchTo(previous);
	pg_call([&] { MemoryContextDelete(context); });
	return state.release();
}

/* Runs the search one step further and keeps its new results. */
void
fetch_batch(Relation index, ScanState &state)
{
	IndexStore &store = open_index_store(index);
	state.found.clear();
	state.resolved = 0;
	{
		lmdb::Txn txn(store.env(), true);
		StoreReader reader(store, txn);
		Bitmap tombstones = reader.tombstones();
		bool more = state.search->next(
			reader, [&](uint32_t id) { return !tombstones.contains(id); }, state.found);
		if (!more)
			state.done = true;
	}
	check_interrupts();
}

/* Queues the heap TIDs of the next few results. An item deleted since the search (VACUUM
 * removes only rows no snapshot can see) simply has none left. */
void
resolve_tids(Relation index, ScanState &state)
{
	IndexStore &store = open_index_store(index);
	state.tids.clear();
	state.next = 0;
	size_t end = std::min(state.found.size(), state.resolved + state.resolve_chunk);
	state.resolve_chunk = std::min(state.resolve_chunk * 2, ScanState::kMaxResolveChunk);
	lmdb::Txn txn(store.env(), true);
	StoreReader reader(store, txn);
	ItemRecord item;
	for (; state.resolved < end; state.resolved++)
		if (reader.item(state.found[state.resolved].id, &item))
			state.tids.insert(state.tids.end(), item.tids.begin(), item.tids.end());
}

bool
next_tuple(IndexScanDesc scan)
{
	ScanOpaque *opaque = static_cast<ScanOpaque *>(scan->opaque);
	if (opaque->state == nullptr)
		opaque->state = start_scan(scan);
	ScanState &state = *opaque->state;
	for (;;) {
		if (state.next < state.tids.size()) {
			const HeapTid &tid = state.tids[state.next++];
			ItemPointerSet(&scan->xs_heaptid, tid.block, tid.offset);
			scan->xs_recheck = false;
			scan->xs_recheckorderby = false;
			return true;
		}
		if (state.resolved < state.found.size()) {
			resolve_tids(scan->indexRelation, state);
			continue;
		}
		if (state.done)
			return false;
		fetch_batch(scan->indexRelation, state);
	}
}

} // namespace

IndexScanDesc
begin_scan(Relation index, int nkeys, int norderbys)
{
	/* Plain PostgreSQL code, no C++ objects: errors may propagate directly. */
	IndexScanDesc scan = RelationGetIndexScan(index, nkeys, norderbys);
	ScanOpaque *opaque = static_cast<ScanOpaque *>(palloc0(sizeof(ScanOpaque)));
	opaque->release.func = release_state;
	opaque->release.arg = opaque;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &opaque->release);
	scan->opaque = opaque;
	return scan;
}

void
rescan(IndexScanDesc scan, ScanKey, int, ScanKey orderbys, int)
{
	ScanOpaque *opaque = static_cast<ScanOpaque *>(scan->opaque);
	release_state(opaque);
	if (orderbys != nullptr && scan->numberOfOrderBys > 0)
		memmove(scan->orderByData, orderbys, scan->numberOfOrderBys * sizeof(ScanKeyData));
}

bool
get_tuple(IndexScanDesc scan, ScanDirection)
{
	return hannoy_guarded([&] { return next_tuple(scan); });
}

void
end_scan(IndexScanDesc scan)
{
	release_state(static_cast<ScanOpaque *>(scan->opaque));
	hannoy_guarded([&] { prefetch_after_first_scan(scan->indexRelation); });
}

} // namespace hannoy::pg
