/*
 * hannoy_admin.cpp: SQL functions for administrators: hannoy_index_info(), hannoy_index_size(),
 * hannoy_verify(), hannoy_cleanup_orphans() and hannoy_kernels().
 */
#include "hannoy.hpp"

#include <sys/stat.h>

extern "C" {
#include "catalog/pg_inherits.h"
}

#include "core/distance/kernels.hpp"
#include "core/graph/verify.hpp"
#include "core/store/residency.hpp"

#pragma GCC visibility push(default)
extern "C" {
PG_FUNCTION_INFO_V1(hannoy_index_info);
PG_FUNCTION_INFO_V1(hannoy_verify);
PG_FUNCTION_INFO_V1(hannoy_kernels);
PG_FUNCTION_INFO_V1(hannoy_index_size);
PG_FUNCTION_INFO_V1(hannoy_cleanup_orphans);
Datum hannoy_index_size(PG_FUNCTION_ARGS);
Datum hannoy_cleanup_orphans(PG_FUNCTION_ARGS);
}
#pragma GCC visibility pop

namespace hannoy::pg
{

namespace
{

/* Opens a relation that must be a hannoy index; raises PostgreSQL errors. */
Relation
open_hannoy_index(Oid relid)
{
	Relation index = index_open(relid, AccessShareLock);
	if (index->rd_rel->relam != get_am_oid("hannoy", false))
		ereport(ERROR, (errcode(ERRCODE_WRONG_OBJECT_TYPE),
						errmsg("\"%s\" is not a hannoy index", RelationGetRelationName(index))));
	if (index->rd_rel->relkind == RELKIND_PARTITIONED_INDEX)
		ereport(ERROR, (errcode(ERRCODE_WRONG_OBJECT_TYPE),
						errmsg("\"%s\" is a partitioned index, which has no storage of its own",
							   RelationGetRelationName(index)),
						errhint("Pass the index of a partition (see pg_partition_tree()).")));
	return index;
}

TupleDesc
result_descriptor(FunctionCallInfo fcinfo)
{
	TupleDesc desc;
	if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	return BlessTupleDesc(desc);
}

Datum
index_info(FunctionCallInfo fcinfo)
{
	Oid relid = PG_GETARG_OID(0);
	Relation index = pg_call([&] { return open_hannoy_index(relid); });
	TupleDesc desc = pg_call([&] { return result_descriptor(fcinfo); });
	Metapage meta = pg_call([&] { return read_metapage(index); });
	std::string path = index_file_path(index);
	struct stat st;
	bool exists = ::stat(path.c_str(), &st) == 0;

	Datum values[15];
	bool nulls[15] = {false};
	values[0] = pg_call([&] { return CStringGetTextDatum(path.c_str()); });
	values[1] = BoolGetDatum(exists);
	values[2] = Int64GetDatum(exists ? static_cast<int64>(st.st_size) : 0);
	bool matches = false;
	IndexMeta file_meta;
	std::string problem;
	if (exists) {
		try {
			IndexStore &store = open_index_store(index);
			lmdb::Txn txn(store.env(), true);
			file_meta = StoreReader(store, txn).meta();
			matches = true;
		} catch (const Error &e) {
			problem = e.what();
		}
	}
	values[3] = BoolGetDatum(matches);
	values[4] = pg_call([&] { return CStringGetTextDatum(metric_name(static_cast<Metric>(meta.metric))); });
	values[5] =
		Int32GetDatum(matches ? static_cast<int32>(file_meta.params.dims) : static_cast<int32>(meta.dims));
	values[6] = Int32GetDatum(meta.m);
	values[7] = Int32GetDatum(meta.ef_construction);
	values[8] = Int64GetDatum(matches ? static_cast<int64>(file_meta.live_items) : 0);
	values[9] = Int64GetDatum(matches ? static_cast<int64>(file_meta.tombstoned_items) : 0);
	values[10] = Int32GetDatum(matches ? file_meta.max_level : 0);
	values[11] = Int32GetDatum(matches ? file_meta.format_version : 0);
	values[12] = Int64GetDatum(matches ? static_cast<int64>(file_meta.entry_point) : 0);
	values[13] = Int32GetDatum(matches ? file_meta.max_level + 1 : 0);
	if (!matches) {
		nulls[8] = nulls[9] = nulls[10] = nulls[11] = nulls[12] = nulls[13] = true;
	} else if (file_meta.entry_point == kNoItem) {
		nulls[12] = true; /* empty: no entry point, no layer */
		values[13] = Int32GetDatum(0);
	}
	int64_t resident = exists ? file_resident_bytes(path.c_str()) : -1;
	values[14] = Int64GetDatum(resident);
	nulls[14] = resident < 0;
	if (!problem.empty())
		pg_call([&] { ereport(NOTICE, (errmsg("%s", problem.c_str()))); });
	HeapTuple tuple = pg_call([&] { return heap_form_tuple(desc, values, nulls); });
	pg_call([&] { index_close(index, AccessShareLock); });
	return HeapTupleGetDatum(tuple);
}

/* Storage file and lock file, plus every fork of the index relation (the metapage). */
int64
one_index_size(Oid relid)
{
	Relation index = pg_call([&] { return open_hannoy_index(relid); });
	int64 bytes = static_cast<int64>(index_file_bytes(index));
	pg_call([&] {
		SMgrRelation smgr = RelationGetSmgr(index);
		for (int fork = 0; fork <= MAX_FORKNUM; fork++)
			if (smgrexists(smgr, static_cast<ForkNumber>(fork)))
				bytes += static_cast<int64>(smgrnblocks(smgr, static_cast<ForkNumber>(fork))) * BLCKSZ;
		index_close(index, AccessShareLock);
	});
	return bytes;
}

/* A partitioned index is the sum of its partitions' indexes. */
Datum
index_size(FunctionCallInfo fcinfo)
{
	Oid relid = PG_GETARG_OID(0);
	char relkind = pg_call([&] { return get_rel_relkind(relid); });
	if (relkind != RELKIND_PARTITIONED_INDEX)
		PG_RETURN_INT64(one_index_size(relid));
	List *members = pg_call([&] { return find_all_inheritors(relid, AccessShareLock, nullptr); });
	int64 bytes = 0;
	ListCell *cell;
	foreach (cell, members) {
		Oid member = lfirst_oid(cell);
		if (pg_call([&] { return get_rel_relkind(member); }) == RELKIND_INDEX)
			bytes += one_index_size(member);
	}
	PG_RETURN_INT64(bytes);
}

/* Removes the storage files of the current database that belong to no index. */
Datum
cleanup_orphans(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	pg_call([&] { InitMaterializedSRF(fcinfo, 0); });
	std::vector<OrphanFile> removed = cleanup_orphan_files(true);
	for (const OrphanFile &file : removed) {
		pg_call([&] {
			Datum values[2];
			bool nulls[2] = {false, false};
			values[0] = CStringGetTextDatum(file.path.c_str());
			values[1] = Int64GetDatum(file.bytes);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		});
	}
	return static_cast<Datum>(0);
}

Datum
verify(FunctionCallInfo fcinfo)
{
	Oid relid = PG_GETARG_OID(0);
	bool reachability = PG_GETARG_BOOL(1);
	Relation index = pg_call([&] { return open_hannoy_index(relid); });
	TupleDesc desc = pg_call([&] { return result_descriptor(fcinfo); });
	IndexStore &store = open_index_store(index);
	VerifyReport report = verify_store(store, reachability);

	Datum values[9];
	bool nulls[9] = {false};
	values[0] = BoolGetDatum(report.ok() && report.unreachable == 0);
	values[1] = Int64GetDatum(static_cast<int64>(report.items));
	values[8] = Int64GetDatum(static_cast<int64>(report.tids));
	values[2] = Int64GetDatum(static_cast<int64>(report.tombstoned));
	values[3] = Int64GetDatum(static_cast<int64>(report.link_records));
	values[4] = Int64GetDatum(static_cast<int64>(report.links));
	values[5] = Int64GetDatum(static_cast<int64>(report.unreachable));
	nulls[5] = !reachability;
	values[6] = Int32GetDatum(static_cast<int32>(report.max_level));
	values[7] = pg_call([&] {
		Datum *texts =
			static_cast<Datum *>(palloc(sizeof(Datum) * std::max<size_t>(1, report.problems.size())));
		for (size_t i = 0; i < report.problems.size(); i++)
			texts[i] = CStringGetTextDatum(report.problems[i].c_str());
		return PointerGetDatum(construct_array(texts, static_cast<int>(report.problems.size()), TEXTOID, -1,
											   false, TYPALIGN_INT));
	});
	HeapTuple tuple = pg_call([&] { return heap_form_tuple(desc, values, nulls); });
	pg_call([&] { index_close(index, AccessShareLock); });
	return HeapTupleGetDatum(tuple);
}

} // namespace

} // namespace hannoy::pg

using namespace hannoy::pg;

extern "C" Datum
hannoy_index_info(PG_FUNCTION_ARGS)
{
	return hannoy_guarded([&] { return index_info(fcinfo); });
}

extern "C" Datum
hannoy_verify(PG_FUNCTION_ARGS)
{
	return hannoy_guarded([&] { return verify(fcinfo); });
}

extern "C" Datum
hannoy_index_size(PG_FUNCTION_ARGS)
{
	return hannoy_guarded([&] { return index_size(fcinfo); });
}

extern "C" Datum
hannoy_cleanup_orphans(PG_FUNCTION_ARGS)
{
	return hannoy_guarded([&] { return cleanup_orphans(fcinfo); });
}

extern "C" Datum
hannoy_kernels(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(hannoy::simd::active_kernels().name));
}
