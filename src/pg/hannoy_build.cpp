/*
 * hannoy_build.cpp: ambuild and ambuildempty.
 *
 * A build writes a new storage file for the index's new relation file: vectors first (from
 * the heap scan), then the graph (built in memory, vectors read from the file's map), then
 * one sync. Only after the file is durable is the metapage written, so a committed index
 * always has a complete file. The file is removed if the transaction aborts, and the files
 * of earlier builds of the same index are removed when it commits.
 */
#include "hannoy.hpp"

#include <memory>
#include <vector>

#include "core/graph/builder.hpp"

namespace hannoy::pg
{

namespace
{

/* Builds are reproducible: item levels depend only on this seed and the item's id. */
constexpr uint64_t kLevelSeed = 0x68616e6e6f79ull;

struct BuildState {
	Relation index;
	Metric metric;
	BuildParams params;
	Identity identity;
	std::string path;
	std::unique_ptr<IndexStore> store;
	std::unique_ptr<IndexBuilder> builder;
	std::unique_ptr<AlignedBytes> stored;
	MemoryContext tuple_context;
	uint32_t dims = 0;
};

void
create_store(BuildState &state, uint32_t dims)
{
	IndexMeta meta;
	meta.identity = state.identity;
	meta.params.metric = state.metric;
	meta.params.quantization = state.params.quantization;
	meta.params.dims = dims;
	meta.params.m = static_cast<uint16_t>(state.params.m);
	meta.params.ef_construction = static_cast<uint16_t>(state.params.ef_construction);
	meta.level_seed = kLevelSeed;
	state.store = IndexStore::create(state.path, meta, store_options());
	state.builder = std::make_unique<IndexBuilder>(*state.store);
	state.dims = dims;
	state.stored = std::make_unique<AlignedBytes>(vector_bytes(state.metric, dims));
}

/* Called by the heap scan for every live tuple. */
void
build_callback(Relation, ItemPointer tid, Datum *values, bool *isnull, bool, void *opaque)
{
	if (isnull[0])
		return; /* NULL vectors are not indexed */
	BuildState &state = *static_cast<BuildState *>(opaque);
	hannoy_guarded([&] {
		MemoryContext previous = MemoryContextSwitchTo(state.tuple_context);
		VectorValue vector = pg_call([&] { return vector_from_datum(values[0], state.metric); });
		if (state.builder == nullptr)
			create_store(state, vector.dims);
		else if (vector.dims != state.dims)
			throw Error(ErrorCode::DimensionMismatch,
						wrong_dimension_message(state.metric, state.dims, vector.dims),
						format("The row at (%u,%u) has %u %s; the index's first row has %u.",
							   ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid), vector.dims,
							   dimension_noun(state.metric), state.dims));
		write_stored_vector(state.metric, vector, state.stored->data());
		state.builder->add(HeapTid{ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid)},
						   state.stored->data());
		MemoryContextSwitchTo(previous);
		MemoryContextReset(state.tuple_context);
	});
}

void
report_progress(BuildPhase phase, uint64_t done, uint64_t total)
{
	pg_call([&] {
		const int params[] = {PROGRESS_CREATEIDX_SUBPHASE, PROGRESS_CREATEIDX_TUPLES_TOTAL,
							  PROGRESS_CREATEIDX_TUPLES_DONE};
		const int64 values[] = {static_cast<int64>(phase) + 1, static_cast<int64>(total),
								static_cast<int64>(done)};
		pgstat_progress_update_multi_param(3, params, values);
	});
	check_interrupts();
}

IndexBuildResult *
build_index(Relation heap, Relation index, IndexInfo *info)
{
	if (info->ii_NumIndexAttrs != 1)
		throw Error(ErrorCode::InvalidInput, "hannoy indexes have exactly one column");
	BuildState state;
	state.index = index;
	state.metric = pg_call([&] { return index_metric(index); });
	state.params = pg_call([&] { return index_build_params(index); });
	if (state.params.quantization == Quantization::Binary && state.metric != Metric::L2 &&
		state.metric != Metric::Cosine && state.metric != Metric::L1)
		throw Error(
			ErrorCode::InvalidInput,
			format("quantization = 'binary' is not supported for %s indexes", metric_name(state.metric)),
			"Binary quantization applies to real_l2_ops, real_cosine_ops and real_l1_ops.");
	state.path = index_file_path(index);

	Oid oid = RelationGetRelid(index);
	pg_call([&] {
		pg_strong_random(state.identity.uuid.data(), state.identity.uuid.size());
		state.identity.system_identifier = GetSystemIdentifier();
		state.identity.creator_xid = GetTopTransactionId();
	});
	state.identity.index_oid = oid;
	state.identity.relfilenode = HANNOY_RELFILENUMBER(index);
	state.identity.database_oid = HANNOY_DATABASE(index);
	state.identity.tablespace_oid = HANNOY_TABLESPACE(index);

	/* This process may have the file open (TRUNCATE of a table created in the same
	 * transaction rebuilds in place): close it before replacing it. */
	forget_index_store(oid);
	discard_pending_inserts(oid); /* the heap scan below indexes those rows */
	remember_created_file(state.path, oid);
	remove_other_files_at_commit(oid, HANNOY_TABLESPACE(index), HANNOY_DATABASE(index), state.path);

	state.tuple_context = pg_call([] {
		return AllocSetContextCreate(CurrentMemoryContext, "hannoy build tuple", ALLOCSET_DEFAULT_SIZES);
	});
	pg_call([] {
		pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE,
									 static_cast<int64>(BuildPhase::LoadingVectors) + 1);
	});
	double heap_tuples = pg_call([&] {
		return table_index_build_scan(heap, index, info, true, true, build_callback, &state, nullptr);
	});
	if (state.builder == nullptr)
		create_store(state, 0);
	state.builder->finish(report_progress);
	uint32_t items = state.builder->rows();

	Metapage meta{};
	meta.magic = kMetapageMagic;
	meta.version = kMetapageVersion;
	memcpy(meta.uuid, state.identity.uuid.data(), sizeof(meta.uuid));
	meta.index_oid = oid;
	meta.relfilenode = HANNOY_RELFILENUMBER(index);
	meta.dims = state.dims;
	meta.metric = static_cast<uint8>(state.metric);
	meta.quantization = static_cast<uint8>(state.params.quantization);
	meta.m = static_cast<uint16>(state.params.m);
	meta.ef_construction = static_cast<uint16>(state.params.ef_construction);
	state.builder.reset();
	state.store.reset(); /* closed: scans reopen and verify it against the metapage */
	pg_call([&] {
		write_metapage(index, MAIN_FORKNUM, meta);
		MemoryContextDelete(state.tuple_context);
	});

	IndexBuildResult *result =
		pg_call([] { return static_cast<IndexBuildResult *>(palloc0(sizeof(IndexBuildResult))); });
	result->heap_tuples = heap_tuples;
	result->index_tuples = items;
	return result;
}

} // namespace

IndexBuildResult *
build(Relation heap, Relation index, IndexInfo *info)
{
	return hannoy_guarded([&] { return build_index(heap, index, info); });
}

void
build_empty(Relation index)
{
	hannoy_guarded([&] {
		Metapage meta{};
		meta.magic = kMetapageMagic;
		meta.version = kMetapageVersion;
		meta.flags = kMetapageEmptyInit;
		meta.index_oid = RelationGetRelid(index);
		pg_call([&] {
			meta.metric = static_cast<uint8>(index_metric(index));
			write_metapage(index, INIT_FORKNUM, meta);
		});
	});
}

} // namespace hannoy::pg
