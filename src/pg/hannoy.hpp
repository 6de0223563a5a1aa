/*
 * hannoy.hpp: declarations shared by the PostgreSQL glue (src/pg). Nothing here is visible
 * to the core.
 */
#pragma once

#include "compat.hpp"
#include "exports.hpp"
#include "guard.hpp"

#include <string>
#include <vector>

#include "core/distance/metric.hpp"
#include "core/store/index_store.hpp"

namespace hannoy::pg
{

/* ---- Metapage (block 0 of the index relation) ------------------------------------------ */

/// "HNNP" little-endian: identifies a hannoy metapage.
constexpr uint32 kMetapageMagic = 0x504e4e48;
constexpr uint32 kMetapageVersion = 1;
constexpr BlockNumber kMetapageBlock = 0;

enum MetapageFlags : uint32 {
	/// Written by ambuildempty into the init fork of an unlogged index: after a crash reset
	/// the storage file is stale and must be recreated empty.
	kMetapageEmptyInit = 1u << 0,
};

/// The index's anchor in PostgreSQL: which storage file belongs to it, and its parameters.
struct Metapage {
	uint32 magic;
	uint32 version;
	uint32 flags;
	uint32 reserved;
	uint8 uuid[16];     ///< equal to the storage file's uuid
	Oid index_oid;      ///< the index the file was built for
	Oid relfilenode;    ///< the relation file the file was built for
	uint32 dims;        ///< dimension at build time (0: built empty, the first insert fixes it)
	uint8 metric;       ///< hannoy::Metric
	uint8 quantization; ///< hannoy::Quantization
	uint16 m;
	uint16 ef_construction;
	uint16 reserved2;
	/// The storage file's change counter (IndexMeta::seq) after the last write made under
	/// the writer lock, WAL-logged after that write was durable. A file whose counter is
	/// lower is older than the index (restored or copied from an earlier state) and is not
	/// trusted. 0 on metapages written before any such write.
	uint64 seq;
};

/// Writes the metapage into block 0 of `fork` (MAIN_FORKNUM after a build, INIT_FORKNUM for
/// unlogged indexes), WAL-logged when the relation needs it. Raises PostgreSQL errors.
void write_metapage(Relation index, ForkNumber fork, const Metapage &meta);
/// Reads (and caches in rd_amcache) the metapage. Raises PostgreSQL errors.
Metapage read_metapage(Relation index);
/// Raises the metapage's seq to `seq` (WAL-logged as a small generic record). The caller
/// holds the index's writer lock. Raises PostgreSQL errors.
void advance_metapage_seq(Relation index, uint64 seq);

/* ---- Options and GUCs ------------------------------------------------------------------- */

/// Reloptions as stored in rd_options.
struct Options {
	int32 vl_len_;
	int m;
	int ef_construction;
	int quantization_offset;
};

struct BuildParams {
	int m;
	int ef_construction;
	Quantization quantization;
};

/// Options of an index, defaults filled in and cross-checked. Raises PostgreSQL errors.
BuildParams index_build_params(Relation index);

extern int ef_search;
/// hannoy.prefetch_memory, in kB.
extern int prefetch_memory_kb;
/// hannoy.max_index_size, in megabytes: the most a storage file's map may grow to.
extern int max_index_size_mb;

/* ---- Vectors ------------------------------------------------------------------------------ */

/// A detoasted, validated real[] value.
struct FloatVector {
	const float *data;
	uint32 dims;
};

/// Detoasts and validates a real[]: one dimension, no NULL elements, no NaN or infinity, at
/// most kMaxFloatDims elements. Raises PostgreSQL errors.
FloatVector float_vector_from_datum(Datum datum);

/// A detoasted, validated vector of an index's element type.
struct VectorValue {
	const void *data; ///< floats for real[], bytes for bit strings
	uint32 dims;      ///< floats, or bits
};

/// Detoasts and validates a value for `metric`: real[] for the float metrics, a bit string
/// (1 to kMaxBits bits) for hamming. Raises PostgreSQL errors.
VectorValue vector_from_datum(Datum datum, Metric metric);

/// Writes the stored form of a validated value (normalised for cosine) into `out`, which
/// must hold vector_bytes(metric, value.dims) bytes.
void write_stored_vector(Metric metric, const VectorValue &value, uint8_t *out);

/// The metric an index's opclass stands for (from support function 2). Raises PG errors.
Metric index_metric(Relation index);

/* ---- Storage file ------------------------------------------------------------------------ */

/// Path of the index's storage file, relative to the data directory (flat file in the
/// database directory of the index's tablespace, named pgsql_tmp_hannoy_<oid>_<relfilenode>
/// so that pg_basebackup and pg_checksums skip it).
std::string index_file_path(Relation index);

/// The index's open storage file, checked against the metapage once per process.
/// Throws Unavailable (missing, foreign or stale file) or PgError.
IndexStore &open_index_store(Relation index);
/// hannoy.prefetch_memory's read-ahead of an index this process opened, once, when its first
/// scan ends: issued at open, the background reads queued ahead of the first search's own and
/// made it wait longer than it does without them.
void prefetch_after_first_scan(Relation index);
/// Whether the index can answer queries on this node: cheap, never raises.
bool index_store_available(Relation index);
/// Closes the cached file of an index in this process, if open.
void forget_index_store(Oid index_oid);
/// Closes the least recently used open file that no transaction uses (to free file
/// descriptors); false when there is none.
bool close_idle_index_store();
/// Options for opening index files in this process.
IndexStore::Options store_options();

/// Registers a file created in this transaction: removed if the (sub)transaction aborts.
void remember_created_file(const std::string &path, Oid index_oid);
/// Registers the other files of an index (older relation files): removed at commit.
void remove_other_files_at_commit(Oid index_oid, Oid tablespace, Oid database, const std::string &keep);

/// Bytes of the index's storage file and its lock file.
uint64 index_file_bytes(Relation index);

/// A storage file that belongs to no index.
struct OrphanFile {
	std::string path; ///< relative to the data directory
	int64 bytes;      ///< data and lock file
};
/// Finds (and with `remove`, deletes) the orphaned storage files of the current database.
std::vector<OrphanFile> cleanup_orphan_files(bool remove);

/// Installs the drop and alter hooks, the utility hook (CREATE DATABASE) and the
/// transaction callbacks (from _PG_init).
void init_storage_lifecycle();

/// Takes the index's writer lock, a heavyweight lock PostgreSQL can see (deadlocks,
/// cancellation, pg_locks), before LMDB's own writer mutex is touched.
void lock_index_writer(Relation index);
void unlock_index_writer(Relation index);

/* ---- Inserts ------------------------------------------------------------------------------ */

/// Links the rows this backend has buffered for the index's current relation file (before it
/// reads the index, or before the file is copied elsewhere).
void flush_pending_inserts(Relation index);
/// Drops this backend's buffered rows of the index's current relation file, which is being
/// rebuilt in place from its heap (TRUNCATE of a table created in the same transaction).
void discard_pending_inserts(Relation index);
/// Installs the transaction callback and executor hook that flush buffered rows (_PG_init).
void init_insert_buffering();

} // namespace hannoy::pg
