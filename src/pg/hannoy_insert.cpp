/*
 * hannoy_insert.cpp: aminsert, with inserts buffered per backend and linked in batches.
 *
 * LMDB has one writer per file, and linking a vector is the expensive part of an insert, so a
 * backend collects the rows it inserts into an index and links them in one LMDB write
 * transaction per batch. A batch is flushed:
 *  - when it holds kFlushRows rows or kFlushBytes of vectors;
 *  - before this backend scans the index (it reads its own writes);
 *  - before a parallel plan starts (its workers read the index file, not this buffer);
 *  - at pre-commit and pre-prepare, so a committed row always has its index entry.
 * An aborted transaction's buffer is dropped, and so are the rows of an aborted subtransaction:
 * their heap tuples are dead at once, so another backend's VACUUM may free their TIDs for new
 * rows before this transaction ends, and a late entry would then point at the wrong row.
 * Buffers are kept per relation file of the index: TRUNCATE or REINDEX in a savepoint that
 * rolls back brings the old file back, with its rows still to be linked; at commit, rows of a
 * file that is no longer the index's (it is removed with the commit) are dropped.
 * Each flush takes the index's writer lock (a PostgreSQL lock: cancellable, deadlock-checked,
 * visible in pg_locks) before LMDB's own, and flushes the backend's WAL first, so an entry
 * never becomes durable before its row.
 */
#include "hannoy.hpp"

#include <unordered_map>
#include <vector>

extern "C" {
#include "executor/executor.h"
}

#include "core/graph/store_graph.hpp"

namespace hannoy::pg
{

namespace
{

/* A batch of one index: up to this many rows, or this many bytes of vectors. */
constexpr size_t kFlushRows = 5000;
constexpr size_t kFlushBytes = size_t(32) << 20;

struct PendingIndex {
	Metric metric = Metric::L2;
	uint32_t dims = 0;
	bool heap_needs_wal = true;
	std::vector<uint8_t> vectors; /* stored forms, back to back */
	std::vector<HeapTid> tids;
	std::vector<SubTransactionId> subxacts; /* the subtransaction that inserted each row */

	void clear()
	{
		vectors.clear();
		tids.clear();
		subxacts.clear();
	}
};

/* An index's relation file: buffers belong to one file, not to the index. */
struct FileKey {
	Oid index_oid;
	Oid relfilenode;
	bool operator==(const FileKey &other) const
	{
		return index_oid == other.index_oid && relfilenode == other.relfilenode;
	}
};

struct FileKeyHash {
	size_t operator()(const FileKey &key) const
	{
		return std::hash<uint64_t>()((uint64_t(key.index_oid) << 32) | key.relfilenode);
	}
};

using Buffers = std::unordered_map<FileKey, PendingIndex, FileKeyHash>;

/* This transaction's buffers. Heap-allocated: no static destructor at exit. */
Buffers *pending = nullptr;
ExecutorStart_hook_type previous_executor_start = nullptr;

Buffers &
buffers()
{
	if (pending == nullptr)
		pending = new Buffers();
	return *pending;
}

FileKey
file_key(Relation index)
{
	return FileKey{RelationGetRelid(index), HANNOY_RELFILENUMBER(index)};
}

void
flush(Relation index, PendingIndex &batch)
{
	if (batch.tids.empty())
		return;
	IndexStore &store = open_index_store(index);
	std::vector<NewItem> items;
	items.reserve(batch.tids.size());
	size_t bytes = vector_bytes(batch.metric, batch.dims);
	for (size_t i = 0; i < batch.tids.size(); i++)
		items.push_back(NewItem{batch.tids[i], batch.vectors.data() + i * bytes});
	lock_index_writer(index);
	if (batch.heap_needs_wal)
		pg_call([] { XLogFlush(XactLastRecEnd); });
	Inserter(store).insert(items, batch.dims);
	unlock_index_writer(index);
	batch.clear();
}

/*
 * Flushes the buffers of this transaction whose relation file is still their index's. Buffers of
 * dropped indexes and of replaced relation files are dropped at commit and kept otherwise (a
 * subtransaction rollback may bring the file back).
 */
void
flush_all(bool at_commit)
{
	if (pending == nullptr)
		return;
	for (auto it = pending->begin(); it != pending->end();) {
		PendingIndex &batch = it->second;
		Oid oid = it->first.index_oid;
		bool exists = !batch.tids.empty() &&
					  pg_call([&] { return SearchSysCacheExists1(RELOID, ObjectIdGetDatum(oid)); });
		if (exists) {
			/* The transaction holds RowExclusiveLock on the index since its inserts. */
			Relation index = pg_call([&] { return index_open(oid, RowExclusiveLock); });
			if (HANNOY_RELFILENUMBER(index) == it->first.relfilenode)
				flush(index, batch);
			pg_call([&] { index_close(index, RowExclusiveLock); });
		}
		if (batch.tids.empty() || at_commit)
			it = pending->erase(it);
		else
			++it;
	}
}

/* Drops the rows inserted by an aborting subtransaction and its children (ids are assigned in
 * order, so every subtransaction begun since this one is its child). */
void
drop_subtransaction_rows(SubTransactionId aborted)
{
	if (pending == nullptr)
		return;
	for (auto &entry : *pending) {
		PendingIndex &batch = entry.second;
		size_t bytes = vector_bytes(batch.metric, batch.dims);
		size_t kept = 0;
		for (size_t i = 0; i < batch.tids.size(); i++) {
			if (batch.subxacts[i] >= aborted)
				continue;
			if (kept != i) {
				batch.tids[kept] = batch.tids[i];
				batch.subxacts[kept] = batch.subxacts[i];
				memmove(batch.vectors.data() + kept * bytes, batch.vectors.data() + i * bytes, bytes);
			}
			kept++;
		}
		batch.tids.resize(kept);
		batch.subxacts.resize(kept);
		batch.vectors.resize(kept * bytes);
	}
}

void
subxact_callback(SubXactEvent event, SubTransactionId subxact, SubTransactionId, void *)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		drop_subtransaction_rows(subxact);
}

void
xact_callback(XactEvent event, void *)
{
	switch (event) {
	case XACT_EVENT_PRE_COMMIT:
	case XACT_EVENT_PRE_PREPARE:
		hannoy_guarded([] { flush_all(true); });
		break;
	case XACT_EVENT_COMMIT:
	case XACT_EVENT_ABORT:
	case XACT_EVENT_PARALLEL_ABORT:
	case XACT_EVENT_PREPARE:
		if (pending != nullptr)
			pending->clear();
		break;
	default:
		break;
	}
}

void
executor_start(QueryDesc *query, int eflags)
{
	if (pending != nullptr && !pending->empty() && query->plannedstmt->parallelModeNeeded)
		hannoy_guarded([] { flush_all(false); });
	if (previous_executor_start != nullptr)
		previous_executor_start(query, eflags);
	else
		standard_ExecutorStart(query, eflags);
}

void
buffer_insert(Relation index, Datum value, ItemPointer tid, Relation heap)
{
	IndexStore &store = open_index_store(index);
	PendingIndex &batch = buffers()[file_key(index)];
	Metric metric = store.cached_meta().params.metric;
	uint32_t dims = store.cached_meta().params.dims;
	if (dims == 0) {
		/* Built empty: another backend may have fixed the dimension since we opened it. */
		lmdb::Txn txn(store.env(), true);
		dims = StoreReader(store, txn).meta().params.dims;
	}
	MemoryContext context = pg_call(
		[] { return AllocSetContextCreate(CurrentMemoryContext, "hannoy insert", ALLOCSET_SMALL_SIZES); });
	MemoryContext previous = MemoryContextSwitchTo(context);
	VectorValue vector = pg_call([&] { return vector_from_datum(value, metric); });
	/* Reject a wrong size now, at the statement that inserts it, not at commit. */
	uint32_t expected = dims != 0 ? dims : batch.dims;
	if (expected != 0 && vector.dims != expected)
		throw Error(ErrorCode::DimensionMismatch, wrong_dimension_message(metric, expected, vector.dims));
	size_t bytes = vector_bytes(metric, vector.dims);
	size_t offset = batch.vectors.size();
	batch.vectors.resize(offset + bytes);
	write_stored_vector(metric, vector, batch.vectors.data() + offset);
	batch.tids.push_back(HeapTid{ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid)});
	batch.subxacts.push_back(GetCurrentSubTransactionId());
	batch.metric = metric;
	batch.dims = vector.dims;
	batch.heap_needs_wal = RelationNeedsWAL(heap);
	MemoryContextSwitchTo(previous);
	pg_call([&] { MemoryContextDelete(context); });

	if (batch.tids.size() >= kFlushRows || batch.vectors.size() >= kFlushBytes)
		flush(index, batch);
}

} // namespace

void
flush_pending_inserts(Relation index)
{
	if (pending == nullptr)
		return;
	auto it = pending->find(file_key(index));
	if (it != pending->end())
		flush(index, it->second);
}

void
discard_pending_inserts(Relation index)
{
	if (pending != nullptr)
		pending->erase(file_key(index));
}

void
init_insert_buffering()
{
	RegisterXactCallback(xact_callback, nullptr);
	RegisterSubXactCallback(subxact_callback, nullptr);
	previous_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = executor_start;
}

bool
insert(Relation index, Datum *values, bool *isnull, ItemPointer tid, Relation heap, IndexUniqueCheck, bool,
	   IndexInfo *)
{
	if (isnull[0])
		return false; /* NULL vectors are not indexed */
	hannoy_guarded([&] { buffer_insert(index, values[0], tid, heap); });
	return false;
}

} // namespace hannoy::pg
