/*
 * hannoy_build.cpp: ambuild and ambuildempty, serial or with parallel workers.
 *
 * A build writes a new storage file for the index's new relation file: vectors first (from
 * the heap scan), then the graph (built in one memory region, vectors read from the file's
 * map), then one sync. Only after the file is durable is the metapage written, so a
 * committed index always has a complete file. The file is removed if the transaction
 * aborts, and the files of earlier builds of the same index are removed when it commits.
 *
 * A parallel build (max_parallel_maintenance_workers) runs both phases in every participant,
 * the leader included: each scans part of the heap (a parallel table scan) and appends its
 * rows to the file itself (LMDB serialises the writers; participants reserve whole vector
 * blocks, so their ids never collide); then each maps the file's vectors and links items
 * into a graph held in dynamic shared memory. The graph lives in memory while it fits in
 * maintenance_work_mem, otherwise in a mapped temporary file the kernel can page out.
 */
#include "hannoy.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "core/graph/builder.hpp"

namespace hannoy::pg
{

namespace
{

/* Builds are reproducible: item levels depend only on this seed and the item's id. */
constexpr uint64_t kLevelSeed = 0x68616e6e6f79ull;

/* Keys of the parallel build's shared memory table of contents. */
constexpr uint64 kShmKeyShared = UINT64CONST(0xA000000000000001);
constexpr uint64 kShmKeyScan = UINT64CONST(0xA000000000000002);

/* Where the graph region of a parallel build is. */
enum class RegionKind : uint32 { None = 0, Segment = 1, File = 2 };

/* State shared by the participants of a parallel build (in the parallel context's DSM). */
struct ParallelShared {
	/* Set by the leader before the workers start. */
	Oid heap_oid;
	Oid index_oid;
	bool concurrent;
	Metric metric;
	size_t loader_flush_bytes;
	char path[MAXPGPATH];

	/* Vector blocks reserved by the loaders (atomic builtins: see BulkLoader). */
	uint32 blocks;

	slock_t mutex;
	ConditionVariable changed;
	/* Under mutex. The first participant to meet a row fixes the index's dimension. */
	uint32 dims_state; /* 0: unknown, 1: being written, 2: known */
	uint32 dims;
	int loaders_done;
	double heap_tuples;
	RegionKind region_kind; /* set when the graph region is ready for the workers */
	dsm_handle region_handle;
	size_t region_bytes;
	char region_path[MAXPGPATH];
	int linkers_done;
};

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
	ParallelShared *shared = nullptr; /* parallel build: the shared state */
	size_t loader_flush_bytes = BulkLoader::kDefaultFlushBytes;
};

size_t
maintenance_bytes()
{
	return static_cast<size_t>(maintenance_work_mem) * 1024;
}

/* Waits on the shared condition variable until `done` (read under the mutex) holds. */
template <typename Predicate>
void
wait_for(ParallelShared *shared, Predicate done)
{
	pg_call([&] {
		ConditionVariablePrepareToSleep(&shared->changed);
		for (;;) {
			SpinLockAcquire(&shared->mutex);
			bool ready = done();
			SpinLockRelease(&shared->mutex);
			if (ready)
				break;
			ConditionVariableSleep(&shared->changed, PG_WAIT_EXTENSION);
		}
		ConditionVariableCancelSleep();
	});
}

void
refresh_meta(IndexStore &store)
{
	lmdb::Txn txn(store.env(), true);
	store.set_cached_meta(StoreReader(store, txn).meta());
}

/* Parallel build: the dimension every participant's rows must have. The first participant to
 * meet a row writes its dimension into the file; the others wait for it. */
uint32_t
agree_dimensions(BuildState &state, uint32_t dims)
{
	ParallelShared *shared = state.shared;
	bool mine = false;
	pg_call([&] {
		SpinLockAcquire(&shared->mutex);
		if (shared->dims_state == 0) {
			shared->dims_state = 1;
			mine = true;
		}
		SpinLockRelease(&shared->mutex);
	});
	if (mine) {
		lmdb::run_write(state.store->env(), [&](lmdb::Txn &txn) {
			StoreWriter writer(*state.store, txn);
			IndexMeta meta = writer.meta();
			state.store->set_dimensions(meta, dims);
			writer.put_meta(meta);
		});
		pg_call([&] {
			SpinLockAcquire(&shared->mutex);
			shared->dims = dims;
			shared->dims_state = 2;
			SpinLockRelease(&shared->mutex);
			ConditionVariableBroadcast(&shared->changed);
		});
	} else {
		wait_for(shared, [&] { return shared->dims_state == 2; });
	}
	refresh_meta(*state.store);
	return state.store->cached_meta().params.dims;
}

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
	state.dims = dims;
}

void
start_loading(BuildState &state, uint32_t dims)
{
	state.dims = dims;
	state.builder = std::make_unique<IndexBuilder>(
		*state.store, state.shared != nullptr ? &state.shared->blocks : nullptr, state.loader_flush_bytes);
	state.stored = std::make_unique<AlignedBytes>(vector_bytes(state.metric, dims));
}

/* Called by the heap scan for every live tuple (in every participant). */
void
build_callback(Relation, ItemPointer tid, Datum *values, bool *isnull, bool, void *opaque)
{
	if (isnull[0])
		return; /* NULL vectors are not indexed */
	BuildState &state = *static_cast<BuildState *>(opaque);
	hannoy_guarded([&] {
		MemoryContext previous = MemoryContextSwitchTo(state.tuple_context);
		VectorValue vector = pg_call([&] { return vector_from_datum(values[0], state.metric); });
		if (state.builder == nullptr) {
			if (state.store == nullptr)
				create_store(state, vector.dims);
			uint32_t dims = state.shared != nullptr ? agree_dimensions(state, vector.dims) : vector.dims;
			start_loading(state, dims);
		}
		if (vector.dims != state.dims)
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

/* A graph region in a temporary file, mapped shared: used when the graph does not fit in
 * maintenance_work_mem (the kernel pages it like any file) or no shared memory segment can
 * be had. Files named pgsql_tmp* in base/pgsql_tmp are removed by PostgreSQL at startup,
 * so a crash leaves nothing behind. */
class MappedRegion
{
public:
	MappedRegion() = default;
	MappedRegion(const MappedRegion &) = delete;
	MappedRegion &operator=(const MappedRegion &) = delete;
	~MappedRegion() { release(); }

	void create(const std::string &path, size_t bytes)
	{
		if (::mkdir("base/pgsql_tmp", S_IRWXU) != 0 && errno != EEXIST)
			throw_errno("could not create directory \"base/pgsql_tmp\"");
		int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, S_IRUSR | S_IWUSR);
		if (fd < 0)
			throw_errno(format("could not create file \"%s\"", path.c_str()));
		owner_ = true;
		path_ = path;
		if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
			::close(fd);
			throw_errno(format("could not size file \"%s\"", path.c_str()));
		}
		map(fd, bytes);
	}
	void attach(const std::string &path, size_t bytes)
	{
		int fd = ::open(path.c_str(), O_RDWR);
		if (fd < 0)
			throw_errno(format("could not open file \"%s\"", path.c_str()));
		path_ = path;
		map(fd, bytes);
	}
	void *data() const { return data_; }
	void release()
	{
		if (data_ != nullptr)
			::munmap(data_, bytes_);
		data_ = nullptr;
		if (owner_)
			::unlink(path_.c_str());
		owner_ = false;
	}

private:
	void map(int fd, size_t bytes)
	{
		void *p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		int saved = errno;
		::close(fd);
		if (p == MAP_FAILED) {
			errno = saved;
			throw_errno(format("could not map file \"%s\"", path_.c_str()));
		}
		data_ = p;
		bytes_ = bytes;
	}
	[[noreturn]] static void throw_errno(const std::string &what)
	{
		int saved = errno;
		throw Error(saved == ENOSPC ? ErrorCode::StorageFull : ErrorCode::Storage,
					what + ": " + strerror(saved));
	}

	void *data_ = nullptr;
	size_t bytes_ = 0;
	std::string path_;
	bool owner_ = false;
};

std::string
temporary_region_path()
{
	static uint32_t counter = 0;
	return format("base/pgsql_tmp/pgsql_tmp_hannoy_graph_%d_%u", MyProcPid, ++counter);
}

/* The leader's side of graph construction: private memory or a file when serial, a dynamic
 * shared memory segment or a file when workers take part. */
class LeaderConstruction : public GraphConstruction
{
public:
	LeaderConstruction(ParallelShared *shared, int workers) : shared_(shared), workers_(workers) {}
	~LeaderConstruction() override
	{
		/* On success the segment is detached in run(); on error the resource owner does it. */
		private_.reset();
	}

	void *allocate(size_t bytes) override
	{
		bool fits = bytes <= maintenance_bytes();
		if (fits && shared_ == nullptr) {
			private_.reset(new uint64_t[(bytes + 7) / 8]);
			return private_.get();
		}
		if (fits) {
			segment_ = pg_call([&] { return dsm_create(bytes, DSM_CREATE_NULL_IF_MAXSEGMENTS); });
			if (segment_ != nullptr) {
				kind_ = RegionKind::Segment;
				bytes_ = bytes;
				return pg_call([&] { return dsm_segment_address(segment_); });
			}
			pg_call([] {
				ereport(NOTICE,
						(errmsg("hannoy: no dynamic shared memory segment is available for the graph, "
								"building it in a temporary file")));
			});
		}
		path_ = temporary_region_path();
		file_.create(path_, bytes);
		kind_ = RegionKind::File;
		bytes_ = bytes;
		return file_.data();
	}

	void run(void *, const std::function<void(bool leader)> &participate) override
	{
		if (shared_ != nullptr) {
			pg_call([&] {
				SpinLockAcquire(&shared_->mutex);
				shared_->region_kind = kind_;
				shared_->region_bytes = bytes_;
				shared_->region_handle = segment_ != nullptr ? dsm_segment_handle(segment_) : 0;
				strlcpy(shared_->region_path, path_.c_str(), sizeof(shared_->region_path));
				SpinLockRelease(&shared_->mutex);
				ConditionVariableBroadcast(&shared_->changed);
			});
		}
		participate(true);
		if (shared_ != nullptr)
			wait_for(shared_, [&] { return shared_->linkers_done >= workers_; });
	}

	void release()
	{
		file_.release();
		if (segment_ != nullptr) {
			dsm_segment *segment = segment_;
			segment_ = nullptr;
			pg_call([&] { dsm_detach(segment); });
		}
	}

private:
	ParallelShared *shared_;
	int workers_;
	std::unique_ptr<uint64_t[]> private_;
	dsm_segment *segment_ = nullptr;
	MappedRegion file_;
	std::string path_;
	RegionKind kind_ = RegionKind::None;
	size_t bytes_ = 0;
};

/* How many workers to ask for: PostgreSQL 15 plans them for B-tree builds only. */
int
planned_workers(Relation heap, Relation index, IndexInfo *info)
{
	int workers = info->ii_ParallelWorkers;
#if PG_VERSION_NUM < 170000
	if (workers == 0 && IsNormalProcessingMode() && !IsInParallelMode())
		workers = pg_call(
			[&] { return plan_create_index_workers(RelationGetRelid(heap), RelationGetRelid(index)); });
#endif
	return workers;
}

/* Parallel part of a build, as the leader runs it. */
struct ParallelBuild {
	ParallelContext *context = nullptr;
	ParallelShared *shared = nullptr;
	Snapshot snapshot = nullptr;
	int launched = 0;
};

/* Sets up the workers; false (and no parallel mode) when none can be had. */
bool
begin_parallel(ParallelBuild &parallel, BuildState &state, Relation heap, Relation index, IndexInfo *info,
			   int requested)
{
	return pg_call([&] {
		EnterParallelMode();
		ParallelContext *pcxt = CreateParallelContext("hannoy", "hannoy_parallel_build_main", requested);
		bool concurrent = info->ii_Concurrent;
		Snapshot snapshot = concurrent ? RegisterSnapshot(GetTransactionSnapshot()) : SnapshotAny;
		Size scan_bytes = table_parallelscan_estimate(heap, snapshot);
		shm_toc_estimate_chunk(&pcxt->estimator, sizeof(ParallelShared));
		shm_toc_estimate_chunk(&pcxt->estimator, scan_bytes);
		shm_toc_estimate_keys(&pcxt->estimator, 2);
		InitializeParallelDSM(pcxt);
		if (pcxt->seg == nullptr) {
			if (IsMVCCSnapshot(snapshot))
				UnregisterSnapshot(snapshot);
			DestroyParallelContext(pcxt);
			ExitParallelMode();
			ereport(NOTICE,
					(errmsg("hannoy: no dynamic shared memory for a parallel build, building serially")));
			return false;
		}
		auto *shared = static_cast<ParallelShared *>(shm_toc_allocate(pcxt->toc, sizeof(ParallelShared)));
		memset(shared, 0, sizeof(ParallelShared));
		shared->heap_oid = RelationGetRelid(heap);
		shared->index_oid = RelationGetRelid(index);
		shared->concurrent = concurrent;
		shared->metric = state.metric;
		shared->loader_flush_bytes = state.loader_flush_bytes;
		strlcpy(shared->path, state.path.c_str(), sizeof(shared->path));
		SpinLockInit(&shared->mutex);
		ConditionVariableInit(&shared->changed);
		auto *scan = static_cast<ParallelTableScanDesc>(shm_toc_allocate(pcxt->toc, scan_bytes));
		table_parallelscan_initialize(heap, scan, snapshot);
		shm_toc_insert(pcxt->toc, kShmKeyShared, shared);
		shm_toc_insert(pcxt->toc, kShmKeyScan, scan);
		LaunchParallelWorkers(pcxt);
		if (pcxt->nworkers_launched < requested)
			ereport(NOTICE, (errmsg("hannoy: %d of %d parallel workers could be launched for the build",
									pcxt->nworkers_launched, requested)));
		ereport(DEBUG1, (errmsg("hannoy: building index \"%s\" with %d parallel workers",
								RelationGetRelationName(index), pcxt->nworkers_launched)));
		/* A worker that fails to start would otherwise be waited for forever. */
		if (pcxt->nworkers_launched > 0)
			WaitForParallelWorkersToAttach(pcxt);
		parallel.context = pcxt;
		parallel.shared = shared;
		parallel.snapshot = snapshot;
		parallel.launched = pcxt->nworkers_launched;
		return true;
	});
}

void
end_parallel(ParallelBuild &parallel)
{
	pg_call([&] {
		WaitForParallelWorkersToFinish(parallel.context);
		if (IsMVCCSnapshot(parallel.snapshot))
			UnregisterSnapshot(parallel.snapshot);
		DestroyParallelContext(parallel.context);
		ExitParallelMode();
	});
	parallel.context = nullptr;
}

/* One participant's share of the heap scan (parallel) or the whole scan (serial). */
double
scan_heap(BuildState &state, Relation heap, Relation index, IndexInfo *info, ParallelTableScanDesc pscan,
		  bool leader)
{
	return pg_call([&] {
		TableScanDesc scan = pscan != nullptr ? table_beginscan_parallel(heap, pscan) : nullptr;
		return table_index_build_scan(heap, index, info, true, leader, build_callback, &state, scan);
	});
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
	discard_pending_inserts(index); /* rebuilt in place: those rows are gone or rescanned */
	remember_created_file(state.path, oid);
	remove_other_files_at_commit(oid, HANNOY_TABLESPACE(index), HANNOY_DATABASE(index), state.path);

	state.tuple_context = pg_call([] {
		return AllocSetContextCreate(CurrentMemoryContext, "hannoy build tuple", ALLOCSET_DEFAULT_SIZES);
	});
	pg_call([] {
		pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE,
									 static_cast<int64>(BuildPhase::LoadingVectors) + 1);
	});

	ParallelBuild parallel;
	int requested = planned_workers(heap, index, info);
	if (requested > 0) {
		/* Workers open the file by path: it exists (dimension still unknown) before they start. */
		create_store(state, 0);
		/* Each participant buffers vectors before writing them; together within the budget. */
		state.loader_flush_bytes = std::clamp(maintenance_bytes() / (2 * static_cast<size_t>(requested + 1)),
											  size_t(1) << 20, BulkLoader::kDefaultFlushBytes);
		if (begin_parallel(parallel, state, heap, index, info, requested))
			state.shared = parallel.shared;
		else
			state.store.reset(); /* serial after all: the first row creates the file */
	} else {
		state.loader_flush_bytes =
			std::clamp(maintenance_bytes() / 2, size_t(1) << 20, BulkLoader::kDefaultFlushBytes);
	}

	double heap_tuples = 0;
	std::unique_ptr<LeaderConstruction> construction;
	if (state.shared != nullptr) {
		auto *pscan = static_cast<ParallelTableScanDesc>(
			pg_call([&] { return shm_toc_lookup(parallel.context->toc, kShmKeyScan, false); }));
		heap_tuples = scan_heap(state, heap, index, info, pscan, true);
		ParallelShared *shared = state.shared;
		wait_for(shared, [&] { return shared->loaders_done >= parallel.launched; });
		heap_tuples += shared->heap_tuples;
		if (state.builder == nullptr) {
			/* The leader met no row itself: load nothing, but agree with what the others did. */
			refresh_meta(*state.store);
			if (state.store->cached_meta().params.dims != 0)
				start_loading(state, state.store->cached_meta().params.dims);
		}
		construction = std::make_unique<LeaderConstruction>(shared, parallel.launched);
	} else {
		heap_tuples = scan_heap(state, heap, index, info, nullptr, true);
		construction = std::make_unique<LeaderConstruction>(nullptr, 0);
	}
	if (state.store == nullptr)
		create_store(state, 0);
	if (state.builder == nullptr)
		state.builder = std::make_unique<IndexBuilder>(
			*state.store, state.shared != nullptr ? &state.shared->blocks : nullptr);
	state.builder->finish(report_progress, construction.get());
	construction->release();
	if (parallel.context != nullptr)
		end_parallel(parallel);
	uint32_t items = state.builder->rows();

	Metapage meta{};
	meta.magic = kMetapageMagic;
	meta.version = kMetapageVersion;
	memcpy(meta.uuid, state.identity.uuid.data(), sizeof(meta.uuid));
	meta.index_oid = oid;
	meta.relfilenode = HANNOY_RELFILENUMBER(index);
	meta.dims = state.store->cached_meta().params.dims;
	meta.metric = static_cast<uint8>(state.metric);
	meta.quantization = static_cast<uint8>(state.params.quantization);
	meta.m = static_cast<uint16>(state.params.m);
	meta.ef_construction = static_cast<uint16>(state.params.ef_construction);
	meta.seq = state.store->cached_meta().seq; /* the file is synced: its counter is durable */
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

/* A worker of a parallel build: loads its share of the heap, then links graph items. */
void
parallel_worker(ParallelShared *shared, ParallelTableScanDesc pscan)
{
	LOCKMODE heap_lock = shared->concurrent ? ShareUpdateExclusiveLock : ShareLock;
	LOCKMODE index_lock = shared->concurrent ? RowExclusiveLock : AccessExclusiveLock;
	Relation heap = pg_call([&] { return table_open(shared->heap_oid, heap_lock); });
	Relation index = pg_call([&] { return index_open(shared->index_oid, index_lock); });
	IndexInfo *info = pg_call([&] { return BuildIndexInfo(index); });
	info->ii_Concurrent = shared->concurrent;

	BuildState state;
	state.index = index;
	state.metric = shared->metric;
	state.path = shared->path;
	state.shared = shared;
	state.loader_flush_bytes = shared->loader_flush_bytes;
	state.store = IndexStore::open(state.path, store_options());
	state.tuple_context = pg_call([] {
		return AllocSetContextCreate(CurrentMemoryContext, "hannoy build tuple", ALLOCSET_DEFAULT_SIZES);
	});
	double tuples = scan_heap(state, heap, index, info, pscan, false);
	if (state.builder != nullptr)
		state.builder->finish_loading();
	pg_call([&] {
		SpinLockAcquire(&shared->mutex);
		shared->loaders_done++;
		shared->heap_tuples += tuples;
		SpinLockRelease(&shared->mutex);
		ConditionVariableBroadcast(&shared->changed);
	});

	/* Graph construction, once the leader has laid out the region. */
	wait_for(shared, [&] { return shared->region_kind != RegionKind::None; });
	dsm_segment *segment = nullptr;
	MappedRegion file;
	void *region = nullptr;
	if (shared->region_kind == RegionKind::Segment) {
		segment = pg_call([&] { return dsm_attach(shared->region_handle); });
		if (segment == nullptr)
			throw Error(ErrorCode::Internal, "hannoy parallel build: could not attach to the graph's memory");
		region = pg_call([&] { return dsm_segment_address(segment); });
	} else {
		file.attach(shared->region_path, shared->region_bytes);
		region = file.data();
	}
	uint32_t calls = 0;
	link_claimed_items(*state.store, region, [&](uint32_t) {
		if (++calls % 8 == 0)
			check_interrupts();
	});
	file.release();
	if (segment != nullptr)
		pg_call([&] { dsm_detach(segment); });
	pg_call([&] {
		SpinLockAcquire(&shared->mutex);
		shared->linkers_done++;
		SpinLockRelease(&shared->mutex);
		ConditionVariableBroadcast(&shared->changed);
	});
	state.builder.reset();
	state.store.reset();
	pg_call([&] {
		index_close(index, index_lock);
		table_close(heap, heap_lock);
	});
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

void
hannoy_parallel_build_main(dsm_segment *, shm_toc *toc)
{
	using namespace hannoy::pg;
	auto *shared = static_cast<ParallelShared *>(shm_toc_lookup(toc, kShmKeyShared, false));
	auto *scan = static_cast<ParallelTableScanDesc>(shm_toc_lookup(toc, kShmKeyScan, false));
	hannoy_guarded([&] { parallel_worker(shared, scan); });
}
