/*
 * hannoy_insert.cpp: aminsert.
 *
 * Each insert links the new vector into the graph in one LMDB write transaction, taken under
 * the index's writer lock (a PostgreSQL lock: cancellable, deadlock-checked, visible in
 * pg_locks). The backend's WAL is flushed first, so the entry never becomes durable before
 * the heap tuple it points to: after a crash, a TID in the index never names a row that was
 * lost and whose slot could be reused.
 */
#include "hannoy.hpp"

#include <vector>

#include "core/graph/store_graph.hpp"

namespace hannoy::pg
{

namespace
{

void
insert_vector(Relation index, Datum value, ItemPointer tid, Relation heap)
{
	MemoryContext context = pg_call(
		[] { return AllocSetContextCreate(CurrentMemoryContext, "hannoy insert", ALLOCSET_SMALL_SIZES); });
	MemoryContext previous = MemoryContextSwitchTo(context);
	IndexStore &store = open_index_store(index);
	Metric metric = store.cached_meta().params.metric;
	VectorValue vector = pg_call([&] { return vector_from_datum(value, metric); });
	AlignedBytes stored(vector_bytes(metric, vector.dims));
	write_stored_vector(metric, vector, stored.data());

	lock_index_writer(index);
	if (RelationNeedsWAL(heap))
		pg_call([] { XLogFlush(XactLastRecEnd); });
	Inserter inserter(store);
	std::vector<NewItem> items{
		NewItem{HeapTid{ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid)}, stored.data()}};
	inserter.insert(items, vector.dims);
	unlock_index_writer(index);

	MemoryContextSwitchTo(previous);
	MemoryContextDelete(context);
}

} // namespace

bool
insert(Relation index, Datum *values, bool *isnull, ItemPointer tid, Relation heap, IndexUniqueCheck, bool,
	   IndexInfo *)
{
	if (isnull[0])
		return false; /* NULL vectors are not indexed */
	hannoy_guarded([&] { insert_vector(index, values[0], tid, heap); });
	return false;
}

} // namespace hannoy::pg
