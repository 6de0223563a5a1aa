/*
 * hannoy_am.cpp: module initialisation, GUCs, reloptions, the access method handler, opclass
 * validation and cost estimation.
 */
#include "hannoy.hpp"

#include <cmath>

extern "C" {
#include "utils/regproc.h"
}

#include "core/distance/kernels.hpp"
#include "core/graph/builder.hpp"

#pragma GCC visibility push(default)
extern "C" {
PG_MODULE_MAGIC;
PG_FUNCTION_INFO_V1(hannoy_handler);
PG_FUNCTION_INFO_V1(hannoy_real_l2_support);
PG_FUNCTION_INFO_V1(hannoy_real_cosine_support);
PG_FUNCTION_INFO_V1(hannoy_real_ip_support);
PG_FUNCTION_INFO_V1(hannoy_real_l1_support);
PG_FUNCTION_INFO_V1(hannoy_bit_hamming_support);
}
#pragma GCC visibility pop

namespace hannoy::pg
{

int ef_search = 40;
int prefetch_memory_kb = 0;
int max_index_size_mb = 1024 * 1024;

namespace
{

relopt_kind relopt_kind_hannoy;

void
validate_quantization(const char *value)
{
	if (value == nullptr || strcmp(value, "none") == 0 || strcmp(value, "binary") == 0)
		return;
	ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					errmsg("invalid value for hannoy option \"quantization\": \"%s\"", value),
					errdetail("Valid values are \"none\" and \"binary\".")));
}

} // namespace

BuildParams
index_build_params(Relation index)
{
	BuildParams params{16, 64, Quantization::None};
	Options *options = reinterpret_cast<Options *>(index->rd_options);
	if (options != nullptr) {
		params.m = options->m;
		params.ef_construction = options->ef_construction;
		if (options->quantization_offset != 0) {
			const char *value = reinterpret_cast<const char *>(options) + options->quantization_offset;
			if (strcmp(value, "binary") == 0)
				params.quantization = Quantization::Binary;
		}
	}
	if (params.ef_construction < 2 * params.m)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("ef_construction must be greater than or equal to 2 * m"),
						errdetail("m is %d and ef_construction is %d.", params.m, params.ef_construction)));
	return params;
}

namespace
{

bytea *
hannoy_options(Datum reloptions, bool validate)
{
	static const relopt_parse_elt table[] = {
		{"m", RELOPT_TYPE_INT, offsetof(Options, m)},
		{"ef_construction", RELOPT_TYPE_INT, offsetof(Options, ef_construction)},
		{"quantization", RELOPT_TYPE_STRING, offsetof(Options, quantization_offset)},
	};
	return static_cast<bytea *>(
		build_reloptions(reloptions, validate, relopt_kind_hannoy, sizeof(Options), table, lengthof(table)));
}

char *
hannoy_build_phase_name(int64 phase)
{
	switch (phase) {
	case PROGRESS_CREATEIDX_SUBPHASE_INITIALIZE:
		return const_cast<char *>("initializing");
	case static_cast<int64>(BuildPhase::LoadingVectors) + 1:
		return const_cast<char *>("loading vectors");
	case static_cast<int64>(BuildPhase::BuildingGraph) + 1:
		return const_cast<char *>("building graph");
	case static_cast<int64>(BuildPhase::WritingGraph) + 1:
		return const_cast<char *>("writing graph");
	default:
		return nullptr;
	}
}

/*
 * Opclass validation: one ORDER BY operator (strategy 1) returning float8, support function 1
 * (the distance, (T, T) -> float8) and support function 2 (the metric descriptor,
 * (internal) -> internal). Problems are reported at INFO, as PostgreSQL's own validators do.
 */
bool
hannoy_validate(Oid opclassoid)
{
	bool result = true;
	HeapTuple classtup = SearchSysCache1(CLAOID, ObjectIdGetDatum(opclassoid));
	if (!HeapTupleIsValid(classtup))
		elog(ERROR, "cache lookup failed for operator class %u", opclassoid);
	Form_pg_opclass classform = reinterpret_cast<Form_pg_opclass>(GETSTRUCT(classtup));
	Oid opfamilyoid = classform->opcfamily;
	Oid opcintype = classform->opcintype;
	char *opclassname = NameStr(classform->opcname);

	CatCList *proclist = SearchSysCacheList1(AMPROCNUM, ObjectIdGetDatum(opfamilyoid));
	CatCList *oprlist = SearchSysCacheList1(AMOPSTRATEGY, ObjectIdGetDatum(opfamilyoid));
	bool has_distance = false, has_metric = false, has_operator = false;

	for (int i = 0; i < proclist->n_members; i++) {
		Form_pg_amproc procform = reinterpret_cast<Form_pg_amproc>(GETSTRUCT(&proclist->members[i]->tuple));
		if (procform->amproclefttype != opcintype || procform->amprocrighttype != opcintype)
			continue; /* belongs to another opclass of the family */
		bool ok;
		switch (procform->amprocnum) {
		case 1:
			ok = check_amproc_signature(procform->amproc, FLOAT8OID, false, 2, 2, opcintype, opcintype);
			has_distance = true;
			break;
		case 2:
			ok = check_amproc_signature(procform->amproc, INTERNALOID, true, 1, 1, INTERNALOID);
			has_metric = true;
			break;
		default:
			ereport(
				INFO,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("hannoy operator class \"%s\" contains function %s with invalid support number %d",
						opclassname, format_procedure(procform->amproc), procform->amprocnum)));
			result = false;
			continue;
		}
		if (!ok) {
			ereport(
				INFO,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("hannoy operator class \"%s\" contains function %s with wrong signature for support "
						"number %d",
						opclassname, format_procedure(procform->amproc), procform->amprocnum)));
			result = false;
		}
	}
	for (int i = 0; i < oprlist->n_members; i++) {
		Form_pg_amop oprform = reinterpret_cast<Form_pg_amop>(GETSTRUCT(&oprlist->members[i]->tuple));
		if (oprform->amoplefttype != opcintype || oprform->amoprighttype != opcintype)
			continue;
		has_operator = true;
		if (oprform->amopstrategy != 1) {
			ereport(
				INFO,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("hannoy operator class \"%s\" contains operator %s with invalid strategy number %d",
						opclassname, format_operator(oprform->amopopr), oprform->amopstrategy)));
			result = false;
		}
		if (oprform->amoppurpose != AMOP_ORDER || !OidIsValid(oprform->amopsortfamily) ||
			!opfamily_can_sort_type(oprform->amopsortfamily, FLOAT8OID)) {
			ereport(INFO, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
						   errmsg("hannoy operator class \"%s\" contains operator %s that is not an ORDER BY "
								  "operator sorted by float8",
								  opclassname, format_operator(oprform->amopopr))));
			result = false;
		}
		if (!check_amop_signature(oprform->amopopr, FLOAT8OID, opcintype, opcintype)) {
			ereport(INFO, (errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
						   errmsg("hannoy operator class \"%s\" contains operator %s with wrong signature",
								  opclassname, format_operator(oprform->amopopr))));
			result = false;
		}
	}
	if (!has_distance || !has_metric || !has_operator) {
		ereport(INFO,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("hannoy operator class \"%s\" is missing %s", opclassname,
						!has_operator ? "its ORDER BY operator"
									  : (!has_distance ? "support function 1" : "support function 2"))));
		result = false;
	}
	ReleaseCatCacheList(oprlist);
	ReleaseCatCacheList(proclist);
	ReleaseSysCache(classtup);
	return result;
}

bool
order_by_constant_is_null(IndexPath *path)
{
	ListCell *cell;
	foreach (cell, path->indexorderbys) {
		Node *clause = static_cast<Node *>(lfirst(cell));
		if (IsA(clause, OpExpr)) {
			OpExpr *op = reinterpret_cast<OpExpr *>(clause);
			if (list_length(op->args) == 2) {
				Node *arg = static_cast<Node *>(lsecond(op->args));
				if (IsA(arg, Const) && reinterpret_cast<Const *>(arg)->constisnull)
					return true;
			}
		}
	}
	return false;
}

/*
 * Cost model. An HNSW scan does all its work before returning the first row, so startup cost
 * equals total cost. The work is the number of nodes whose distance is computed: about
 * m per layer above 0 (greedy descent over log_m(N) layers) plus about m per node expanded
 * on layer 0, where roughly ef_search nodes are expanded. The relation itself is one
 * metapage, so page costs are those of the visited fraction of the storage file.
 * The index is priced out (infinite cost) when it cannot serve the query: no ORDER BY, or a
 * NULL query vector (whose result order is unspecified anyway). Without a usable storage
 * file on this node it is priced at kUnavailableCost; either way the planner falls back to
 * an exact sequential scan.
 */
/* Cost of an index whose storage file is missing here: far above any real plan, so the
 * planner picks an exact sequential scan, but below PostgreSQL's disable_cost, so that a
 * user who disables sequential scans reaches the index and gets its error and hint. */
constexpr Cost kUnavailableCost = 1.0e9;

void
hannoy_cost_estimate(PlannerInfo *root, IndexPath *path, double loop_count, Cost *startup_cost,
					 Cost *total_cost, Selectivity *selectivity, double *correlation, double *pages)
{
	if (path->indexorderbys == NIL || order_by_constant_is_null(path)) {
		*startup_cost = get_float8_infinity();
		*total_cost = get_float8_infinity();
		*selectivity = 0;
		*correlation = 0;
		*pages = 0;
		return;
	}
	Relation index = index_open(path->indexinfo->indexoid, NoLock);
	bool available = index_store_available(index);
	Options *options = reinterpret_cast<Options *>(index->rd_options);
	double m = options != nullptr ? options->m : 16;
	index_close(index, NoLock);
	if (!available) {
		*startup_cost = kUnavailableCost;
		*total_cost = kUnavailableCost;
		*selectivity = 1;
		*correlation = 0;
		*pages = 1;
		return;
	}

	double tuples = std::max(path->indexinfo->tuples, 1.0);
	double layers = std::log(tuples) / std::log(m);
	double visited = std::min(tuples, layers * m + ef_search * m);

	GenericCosts costs;
	memset(&costs, 0, sizeof(costs));
	costs.numIndexTuples = visited;
	genericcostestimate(root, path, loop_count, &costs);
	*startup_cost = costs.indexTotalCost;
	*total_cost = costs.indexTotalCost;
	*selectivity = costs.indexSelectivity;
	*correlation = 0;
	*pages = costs.numIndexPages;
}

} // namespace

/* Implemented in the other glue files. */
IndexBuildResult *build(Relation heap, Relation index, IndexInfo *info);
void build_empty(Relation index);
bool insert(Relation index, Datum *values, bool *isnull, ItemPointer tid, Relation heap,
			IndexUniqueCheck check, bool unchanged, IndexInfo *info);
IndexBulkDeleteResult *bulk_delete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
								   IndexBulkDeleteCallback callback, void *state);
IndexBulkDeleteResult *vacuum_cleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats);
IndexScanDesc begin_scan(Relation index, int nkeys, int norderbys);
void rescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys);
bool get_tuple(IndexScanDesc scan, ScanDirection direction);
void end_scan(IndexScanDesc scan);

} // namespace hannoy::pg

using namespace hannoy::pg;

extern "C" void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(
			ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("hannoy must be loaded via shared_preload_libraries"),
			 errhint("Add shared_preload_libraries = 'hannoy' to postgresql.conf and restart the server.")));

	DefineCustomIntVariable("hannoy.ef_search", "Sets the size of the candidate list of hannoy index scans.",
							"Larger values give better recall and slower scans. Valid range is 1..1000.",
							&ef_search, 40, 1, 1000, PGC_USERSET, 0, nullptr, nullptr, nullptr);
	DefineCustomIntVariable(
		"hannoy.prefetch_memory",
		"Sets how much of an index file a process asks the kernel to read ahead when it opens it.",
		"The whole file when it fits, otherwise the upper layers' vectors, where every search starts, are "
		"read in the background, so that the first queries after a restart do not wait for one disk read "
		"per page. 0 turns it off.",
		&prefetch_memory_kb, 0, 0, INT_MAX, PGC_USERSET, GUC_UNIT_KB, nullptr, nullptr, nullptr);
	DefineCustomIntVariable("hannoy.max_index_size", "Sets the largest size a hannoy index file may grow to.",
							"Writes that would make an index file larger fail with an error naming this "
							"setting; what was committed before stays intact.",
							&max_index_size_mb, 1024 * 1024, 1, INT_MAX, PGC_SUSET, GUC_UNIT_MB, nullptr,
							nullptr, nullptr);
	/* LMDB's descriptors count against max_files_per_process like PostgreSQL's own. */
	hannoy::lmdb::FdAccounting fds;
	fds.acquire = [] { return AcquireExternalFD(); };
	fds.release = [] { ReleaseExternalFD(); };
	fds.make_room = [] { return close_idle_index_store(); };
	hannoy::lmdb::set_fd_accounting(fds);

	relopt_kind_hannoy = add_reloption_kind();
	add_int_reloption(relopt_kind_hannoy, "m", "Maximum number of neighbours per node on upper layers", 16, 2,
					  100, AccessExclusiveLock);
	add_int_reloption(relopt_kind_hannoy, "ef_construction",
					  "Size of the candidate list while building the graph", 64, 4, 1000,
					  AccessExclusiveLock);
	add_string_reloption(relopt_kind_hannoy, "quantization",
						 "Vector compression for graph traversal: none or binary", "none",
						 validate_quantization, AccessExclusiveLock);

	init_storage_lifecycle();
	init_insert_buffering();
	/* After every hannoy.* setting is defined: placeholders left then are typos. */
	MarkGUCPrefixReserved("hannoy");
	/* Pick the distance kernels now, in the postmaster, so every backend inherits the choice. */
	hannoy::simd::active_kernels();
}

extern "C" Datum
hannoy_handler(PG_FUNCTION_ARGS)
{
	IndexAmRoutine *am = makeNode(IndexAmRoutine);
	am->amstrategies = 0;
	am->amsupport = 2;
	am->amoptsprocnum = 0;
	am->amcanorder = false;
	am->amcanorderbyop = true;
	am->amcanbackward = false;
	am->amcanunique = false;
	am->amcanmulticol = false;
	am->amoptionalkey = true;
	am->amsearcharray = false;
	am->amsearchnulls = false;
	am->amstorage = false;
	am->amclusterable = false;
	am->ampredlocks = false;
	am->amcanparallel = false;
	am->amcaninclude = false;
	am->amusemaintenanceworkmem = false;
	am->amparallelvacuumoptions = VACUUM_OPTION_PARALLEL_BULKDEL;
	am->amkeytype = InvalidOid;

	am->ambuild = build;
	am->ambuildempty = build_empty;
	am->aminsert = insert;
	am->ambulkdelete = bulk_delete;
	am->amvacuumcleanup = vacuum_cleanup;
	am->amcanreturn = nullptr;
	am->amcostestimate = hannoy_cost_estimate;
	am->amoptions = hannoy_options;
	am->amproperty = nullptr;
	am->ambuildphasename = hannoy_build_phase_name;
	am->amvalidate = hannoy_validate;
	am->amadjustmembers = nullptr;
	am->ambeginscan = begin_scan;
	am->amrescan = rescan;
	am->amgettuple = get_tuple;
	am->amgetbitmap = nullptr;
	am->amendscan = end_scan;
	am->ammarkpos = nullptr;
	am->amrestrpos = nullptr;
	am->amestimateparallelscan = nullptr;
	am->aminitparallelscan = nullptr;
	am->amparallelrescan = nullptr;
	PG_RETURN_POINTER(am);
}

extern "C" Datum
hannoy_real_l2_support(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(static_cast<int32>(hannoy::Metric::L2));
}

extern "C" Datum
hannoy_real_cosine_support(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(static_cast<int32>(hannoy::Metric::Cosine));
}

extern "C" Datum
hannoy_real_ip_support(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(static_cast<int32>(hannoy::Metric::InnerProduct));
}

extern "C" Datum
hannoy_real_l1_support(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(static_cast<int32>(hannoy::Metric::L1));
}

extern "C" Datum
hannoy_bit_hamming_support(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(static_cast<int32>(hannoy::Metric::Hamming));
}
