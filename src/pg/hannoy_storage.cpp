/*
 * hannoy_storage.cpp: where an index's storage file lives, the per-process cache of open
 * files, and keeping files in step with transactions (create, rebuild, drop).
 *
 * The file is a flat LMDB environment in the database directory of the index's tablespace,
 * named pgsql_tmp_hannoy_<index oid>_<relfilenode>: PostgreSQL's tools skip the pgsql_tmp
 * prefix (pg_basebackup, pg_checksums) and database-level operations (ALTER DATABASE SET
 * TABLESPACE, DROP DATABASE, CREATE DATABASE with file_copy) carry flat files along.
 *
 * Files follow transactions: a file created by a (sub)transaction is removed if it aborts;
 * the files of a dropped or rebuilt index are removed when the dropping transaction commits
 * (for DROP INDEX CONCURRENTLY, the last of its transactions). ALTER INDEX SET TABLESPACE
 * copies the file (OAT_POST_ALTER); CREATE DATABASE with the wal_log strategy, which copies
 * relation files only, gets the template's files copied after it (ProcessUtility_hook). An
 * unlogged index reset by crash recovery gets an empty file at its first use. Files whose
 * index is gone (a crash between commit and removal, a crashed build, stray copies) are
 * swept: by hannoy_cleanup_orphans() and at a backend's first use of an index.
 *
 * Each process opens a file at most once (LMDB forbids opening one file twice per process)
 * and only after fork, lazily, and closes it when the index's relcache entry is invalidated.
 */
#include "hannoy.hpp"

#include "core/graph/prefetch.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <unordered_map>
#include <vector>

extern "C" {
#include "access/genam.h"
#include "catalog/catalog.h"
#include "catalog/pg_database.h"
#include "catalog/pg_tablespace_d.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "nodes/parsenodes.h"
#include "storage/procarray.h"
#include "tcop/utility.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
}

namespace hannoy::pg
{

namespace
{

/* hannoy.orphan_sweep_interval: seconds between automatic sweeps (0: always, -1: never). */
int orphan_sweep_interval = 600;

constexpr char kFilePrefix[] = "pgsql_tmp_hannoy_";
constexpr char kLockSuffix[] = "-lock";
/* Marks the last automatic orphan sweep of a database (its mtime); never an index file. */
constexpr char kSweepStamp[] = "pgsql_tmp_sweep_hannoy";
/* Files younger than this whose owner cannot be established are left alone. */
constexpr time_t kYoungFileSeconds = 60;
/* Same seed as builds: only the level draws of later inserts depend on it. */
constexpr uint64_t kLevelSeed = 0x68616e6e6f79ull;

struct OpenStore {
	std::unique_ptr<IndexStore> store;
	Oid relfilenode;
	std::string path;
	bool stale = false;
	uint64_t last_used = 0;        /* for closing the least recently used file when out of descriptors */
	bool prefetch_pending = false; /* hannoy.prefetch_memory's read-ahead, after the first scan */
};

struct PendingFile {
	std::string path;
	SubTransactionId subxact;
	bool remove_at_commit; /* true: file of a dropped/rebuilt index; false: created here */
	/* DROP INDEX CONCURRENTLY commits several transactions before the index's catalog row is
	 * deleted: its files wait, carried from one transaction to the next, for that one. */
	Oid wait_for_drop = InvalidOid;
	bool carry = false;
};

/* Heap-allocated and never destroyed: no static destructors may run at proc_exit. */
std::unordered_map<Oid, OpenStore> *open_stores = nullptr;
std::vector<PendingFile> *pending_files = nullptr;
bool exit_callback_registered = false;
bool swept_this_process = false;
uint64_t use_clock = 0;
object_access_hook_type previous_object_access_hook = nullptr;
ProcessUtility_hook_type previous_process_utility = nullptr;

std::unordered_map<Oid, OpenStore> &
stores()
{
	if (open_stores == nullptr)
		open_stores = new std::unordered_map<Oid, OpenStore>();
	return *open_stores;
}

std::vector<PendingFile> &
pending()
{
	if (pending_files == nullptr)
		pending_files = new std::vector<PendingFile>();
	return *pending_files;
}

std::string
database_directory(Oid tablespace, Oid database)
{
	char *dir = pg_call([&] { return GetDatabasePath(database, tablespace); });
	std::string result(dir);
	pfree(dir);
	return result;
}

std::string
file_name(Oid index_oid, Oid relfilenode)
{
	return format("%s%u_%u", kFilePrefix, index_oid, relfilenode);
}

bool
ends_with(const std::string &s, const char *suffix)
{
	size_t n = strlen(suffix);
	return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

/* An index file (or a lone lock file) found in a database directory. */
struct FoundFile {
	std::string dir;
	Oid tablespace;
	Oid index_oid;
	Oid relfilenode;
	std::string path; /* of the data file, whether or not it exists */
	bool has_data = false;
	bool has_lock = false;
};

bool
parse_oid(const char *s, const char *end, Oid *out)
{
	if (s == end || end - s > 10)
		return false;
	uint64 value = 0;
	for (const char *c = s; c < end; c++) {
		if (*c < '0' || *c > '9')
			return false;
		value = value * 10 + static_cast<uint64>(*c - '0');
	}
	if (value == 0 || value > 0xFFFFFFFFull)
		return false;
	*out = static_cast<Oid>(value);
	return true;
}

/* Parses pgsql_tmp_hannoy_<oid>_<relfilenode>[-lock]. */
bool
parse_file_name(std::string name, Oid *index_oid, Oid *relfilenode, bool *is_lock)
{
	*is_lock = ends_with(name, kLockSuffix);
	if (*is_lock)
		name.resize(name.size() - strlen(kLockSuffix));
	if (name.compare(0, strlen(kFilePrefix), kFilePrefix) != 0)
		return false;
	const char *p = name.c_str() + strlen(kFilePrefix);
	const char *underscore = strchr(p, '_');
	if (underscore == nullptr)
		return false;
	return parse_oid(p, underscore, index_oid) &&
		   parse_oid(underscore + 1, name.c_str() + name.size(), relfilenode);
}

/* Tablespaces that may hold a directory of a database: pg_default and every entry of
 * pg_tblspc (read from the file system, so it works without catalog access). */
std::vector<Oid>
tablespaces()
{
	std::vector<Oid> result{DEFAULTTABLESPACE_OID};
	if (DIR *d = ::opendir("pg_tblspc")) {
		while (struct dirent *entry = ::readdir(d)) {
			Oid oid;
			const char *name = entry->d_name;
			if (parse_oid(name, name + strlen(name), &oid))
				result.push_back(oid);
		}
		::closedir(d);
	}
	return result;
}

/* Every hannoy index file of a database, in all its tablespaces (optionally one index's). */
std::vector<FoundFile>
find_files(Oid database, Oid only_index = InvalidOid)
{
	std::vector<FoundFile> found;
	for (Oid tablespace : tablespaces()) {
		std::string dir = database_directory(tablespace, database);
		DIR *d = ::opendir(dir.c_str());
		if (d == nullptr)
			continue;
		while (struct dirent *entry = ::readdir(d)) {
			Oid index_oid, relfilenode;
			bool is_lock;
			if (!parse_file_name(entry->d_name, &index_oid, &relfilenode, &is_lock))
				continue;
			if (OidIsValid(only_index) && index_oid != only_index)
				continue;
			std::string path = dir + "/" + file_name(index_oid, relfilenode);
			auto it =
				std::find_if(found.begin(), found.end(), [&](const FoundFile &f) { return f.path == path; });
			if (it == found.end()) {
				found.push_back(FoundFile{dir, tablespace, index_oid, relfilenode, path});
				it = found.end() - 1;
			}
			(is_lock ? it->has_lock : it->has_data) = true;
		}
		::closedir(d);
	}
	return found;
}

int64
file_size(const std::string &path)
{
	struct stat st;
	return ::stat(path.c_str(), &st) == 0 ? static_cast<int64>(st.st_size) : 0;
}

/* Seconds since the file (or its lock file) was last modified; 0 when neither exists (it is
 * being replaced, or was removed meanwhile: not something to remove now). */
time_t
file_age(const std::string &path)
{
	time_t now = ::time(nullptr);
	time_t newest = 0;
	struct stat st;
	if (::stat(path.c_str(), &st) == 0)
		newest = std::max(newest, st.st_mtime);
	if (::stat((path + kLockSuffix).c_str(), &st) == 0)
		newest = std::max(newest, st.st_mtime);
	return newest == 0 ? 0 : now - newest;
}

void
fsync_directory(const std::string &dir)
{
	int fd = ::open(dir.c_str(), O_RDONLY);
	if (fd < 0)
		return;
	(void)::fsync(fd);
	::close(fd);
}

/* Closes a cached store. Only safe when no transaction of it is live in this process. */
void
close_entry(std::unordered_map<Oid, OpenStore>::iterator it)
{
	stores().erase(it);
}

void
close_stale_stores()
{
	auto &cache = stores();
	for (auto it = cache.begin(); it != cache.end();) {
		if (it->second.stale && it->second.store->env().live_txns == 0)
			it = cache.erase(it);
		else
			++it;
	}
}

void
close_store_with_path(const std::string &path)
{
	auto &cache = stores();
	for (auto it = cache.begin(); it != cache.end(); ++it) {
		if (it->second.path == path) {
			if (it->second.store->env().live_txns == 0)
				close_entry(it);
			else
				it->second.stale = true;
			return;
		}
	}
}

bool
store_is_open(const std::string &path)
{
	for (auto &entry : stores())
		if (entry.second.path == path)
			return true;
	return false;
}

void
close_all_stores(int, Datum)
{
	if (open_stores != nullptr)
		open_stores->clear();
}

void
remove_file_quietly(const std::string &path)
{
	close_store_with_path(path);
	if (!IndexStore::remove_files(path) && errno != ENOENT)
		elog(WARNING, "could not remove hannoy index file \"%s\": %m", path.c_str());
}

void
apply_pending(bool committed)
{
	if (pending_files == nullptr)
		return;
	/* Moved out first: nothing here may run twice if a WARNING is interrupted. */
	std::vector<PendingFile> files;
	files.swap(*pending_files);
	for (PendingFile &file : files) {
		if (committed && file.carry) {
			/* A concurrent drop still under way: wait for its last transaction. */
			file.carry = false;
			file.subxact = TopSubTransactionId;
			pending_files->push_back(std::move(file));
		} else if (file.remove_at_commit == committed) {
			remove_file_quietly(file.path);
		}
	}
}

/* Before commit: files of a concurrent drop whose index still exists are carried over. */
void
mark_carried_files()
{
	if (pending_files == nullptr)
		return;
	for (PendingFile &file : *pending_files) {
		if (!OidIsValid(file.wait_for_drop))
			continue;
		bool exists =
			pg_call([&] { return SearchSysCacheExists1(RELOID, ObjectIdGetDatum(file.wait_for_drop)); });
		file.carry = exists;
		if (!exists)
			file.wait_for_drop = InvalidOid;
	}
}

void
xact_callback(XactEvent event, void *)
{
	switch (event) {
	case XACT_EVENT_PRE_PREPARE:
		if (pending_files != nullptr && !pending_files->empty())
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot prepare a transaction that created, rebuilt or dropped a hannoy index")));
		break;
	case XACT_EVENT_PRE_COMMIT:
		hannoy_guarded([] { mark_carried_files(); });
		break;
	case XACT_EVENT_COMMIT:
	case XACT_EVENT_PARALLEL_COMMIT:
		try {
			apply_pending(true);
		} catch (...) {
			elog(WARNING, "hannoy could not remove the files of dropped indexes");
		}
		break;
	case XACT_EVENT_ABORT:
	case XACT_EVENT_PARALLEL_ABORT:
		try {
			apply_pending(false);
		} catch (...) {
			elog(WARNING, "hannoy could not remove the files of aborted index builds");
		}
		break;
	default:
		break;
	}
}

void
subxact_callback(SubXactEvent event, SubTransactionId subxact, SubTransactionId parent, void *)
{
	if (pending_files == nullptr)
		return;
	try {
		auto &files = *pending_files;
		if (event == SUBXACT_EVENT_ABORT_SUB) {
			std::vector<PendingFile> keep;
			for (PendingFile &file : files) {
				if (file.subxact != subxact)
					keep.push_back(std::move(file));
				else if (!file.remove_at_commit)
					remove_file_quietly(file.path);
			}
			files.swap(keep);
		} else if (event == SUBXACT_EVENT_COMMIT_SUB) {
			for (PendingFile &file : files)
				if (file.subxact == subxact)
					file.subxact = parent;
		}
	} catch (...) {
		elog(WARNING, "hannoy could not track index files across a subtransaction");
	}
}

void
relcache_callback(Datum, Oid relid)
{
	if (open_stores == nullptr)
		return;
	/* Only mark: a caller may hold a reference right now; stale entries close at the next open. */
	for (auto &entry : *open_stores)
		if (relid == InvalidOid || entry.first == relid)
			entry.second.stale = true;
}

bool
is_hannoy_index(Form_pg_class form)
{
	if (form->relkind != RELKIND_INDEX || !OidIsValid(form->relam))
		return false;
	return form->relam == get_am_oid("hannoy", true);
}

/* The catalog's view of an index: whether it is a hannoy index, and its relation file. */
struct CatalogEntry {
	bool hannoy = false;
	Oid relfilenode = InvalidOid;
	Oid tablespace = InvalidOid; /* effective: never 0 */
};

CatalogEntry
lookup_index(Oid oid)
{
	CatalogEntry result;
	pg_call([&] {
		HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(oid));
		if (!HeapTupleIsValid(tuple))
			return;
		Form_pg_class form = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple));
		result.hannoy = is_hannoy_index(form);
		result.relfilenode = form->relfilenode;
		result.tablespace = OidIsValid(form->reltablespace) ? form->reltablespace : MyDatabaseTableSpace;
		ReleaseSysCache(tuple);
	});
	return result;
}

/* pg_class as changed by the current command (SnapshotSelf), as OAT_POST_ALTER hooks must
 * read it: the catalog caches still show the row from before the change. */
CatalogEntry
lookup_index_self(Oid oid)
{
	CatalogEntry result;
	pg_call([&] {
		Relation pg_class = table_open(RelationRelationId, AccessShareLock);
		ScanKeyData key;
		ScanKeyInit(&key, Anum_pg_class_oid, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(oid));
		SysScanDesc scan = systable_beginscan(pg_class, ClassOidIndexId, true, SnapshotSelf, 1, &key);
		HeapTuple tuple = systable_getnext(scan);
		if (HeapTupleIsValid(tuple)) {
			Form_pg_class form = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple));
			result.hannoy = is_hannoy_index(form);
			result.relfilenode = form->relfilenode;
			result.tablespace = OidIsValid(form->reltablespace) ? form->reltablespace : MyDatabaseTableSpace;
		}
		systable_endscan(scan);
		table_close(pg_class, AccessShareLock);
	});
	return result;
}

void
schedule_removal(const std::string &path, Oid wait_for_drop)
{
	PendingFile file{path, GetCurrentSubTransactionId(), true};
	file.wait_for_drop = wait_for_drop;
	pending().push_back(std::move(file));
}

/*
 * ALTER INDEX ... SET TABLESPACE (also ALTER INDEX ALL IN TABLESPACE) copies the relation
 * to a new relation file in the new tablespace, then fires OAT_POST_ALTER before the relcache
 * sees the change. The storage file follows: this backend's buffered rows are linked into the
 * old file, a consistent compacted copy is written under the new name in the new directory
 * and given the new identity; the copy is removed if the transaction aborts, the old file
 * when it commits.
 */
void
move_after_set_tablespace(Oid oid)
{
	CatalogEntry now = lookup_index_self(oid);
	if (!now.hannoy)
		return;
	Relation index = pg_call([&] { return index_open(oid, NoLock); });
	Oid old_relfilenode = HANNOY_RELFILENUMBER(index);
	if (now.relfilenode == old_relfilenode && now.tablespace == HANNOY_TABLESPACE(index)) {
		pg_call([&] { index_close(index, NoLock); });
		return;
	}
	std::string old_path = index_file_path(index);
	std::string new_path =
		database_directory(now.tablespace, HANNOY_DATABASE(index)) + "/" + file_name(oid, now.relfilenode);
	IndexStore *store = nullptr;
	try {
		flush_pending_inserts(index);
		store = &open_index_store(index);
	} catch (const Error &e) {
		if (e.code() != ErrorCode::Unavailable)
			throw;
		/* Nothing usable to carry along: the index stays unavailable until REINDEX. */
		pg_call([&] {
			ereport(WARNING, (errmsg("%s", e.what()), errdetail("The index was moved without its storage."),
							  errhint("REINDEX the index.")));
			index_close(index, NoLock);
		});
		return;
	}
	TransactionId xid = pg_call([] { return GetTopTransactionId(); });
	IndexStore::remove_files(new_path);
	remember_created_file(new_path, oid);
	lmdb::check(mdb_env_copy2(store->env().raw(), new_path.c_str(), MDB_CP_COMPACT), "mdb_env_copy2",
				new_path);
	{
		std::unique_ptr<IndexStore> copy = IndexStore::open(new_path, store_options());
		lmdb::run_write(copy->env(), [&](lmdb::Txn &txn) {
			StoreWriter writer(*copy, txn);
			IndexMeta meta = writer.meta();
			meta.identity.relfilenode = now.relfilenode;
			meta.identity.tablespace_oid = now.tablespace;
			meta.identity.creator_xid = xid;
			writer.put_meta(meta);
		});
		copy->env().sync();
	}
	fsync_directory(database_directory(now.tablespace, HANNOY_DATABASE(index)));
	schedule_removal(old_path, InvalidOid);
	pg_call([&] { index_close(index, NoLock); });
}

void
object_access(ObjectAccessType access, Oid class_id, Oid object_id, int sub_id, void *arg)
{
	if (previous_object_access_hook != nullptr)
		previous_object_access_hook(access, class_id, object_id, sub_id, arg);
	if (class_id != RelationRelationId || sub_id != 0)
		return;
	if (access == OAT_POST_ALTER) {
		hannoy_guarded([&] { move_after_set_tablespace(object_id); });
		return;
	}
	if (access != OAT_DROP)
		return;
	hannoy_guarded([&] {
		CatalogEntry entry = lookup_index(object_id);
		if (!entry.hannoy)
			return;
		auto *drop = static_cast<ObjectAccessDrop *>(arg);
		bool concurrent = drop != nullptr && (drop->dropflags & PERFORM_DELETION_CONCURRENTLY) != 0;
		for (const FoundFile &file : find_files(MyDatabaseId, object_id))
			schedule_removal(file.path, concurrent ? object_id : InvalidOid);
	});
}

/* ---- Orphans ------------------------------------------------------------------------------ */

bool
is_pending_path(const std::string &path)
{
	if (pending_files == nullptr)
		return false;
	for (const PendingFile &file : *pending_files)
		if (file.path == path)
			return true;
	return false;
}

bool
catalog_owns(const FoundFile &file)
{
	CatalogEntry entry = lookup_index(file.index_oid);
	return entry.hannoy && entry.relfilenode == file.relfilenode && entry.tablespace == file.tablespace;
}

enum class Verdict { Keep, Busy, Orphan };

/*
 * Whether a file belongs to no index. A file is kept when the catalog names it (index OID,
 * relation file and tablespace), when its index is locked by someone (DDL under way), and
 * when the transaction that created it is still running (a build whose catalog row is not
 * visible yet). The catalog is read again after that check, so a creator that commits in
 * between is seen. Files whose meta cannot be read are kept while young.
 */
Verdict
judge(const FoundFile &file)
{
	if (is_pending_path(file.path) || store_is_open(file.path))
		return Verdict::Keep;
	pg_call([] { AcceptInvalidationMessages(); });
	if (catalog_owns(file))
		return Verdict::Keep;
	if (lookup_index(file.index_oid).hannoy) {
		/* The index exists under another relation file: unless someone is changing it right
		 * now (REINDEX, SET TABLESPACE...), this file is a leftover. */
		bool locked = pg_call([&] { return ConditionalLockRelationOid(file.index_oid, AccessShareLock); });
		if (!locked)
			return Verdict::Busy;
		bool owned = catalog_owns(file);
		pg_call([&] { UnlockRelationOid(file.index_oid, AccessShareLock); });
		if (owned)
			return Verdict::Keep;
	}
	if (!file.has_data)
		return file_age(file.path) < kYoungFileSeconds ? Verdict::Busy : Verdict::Orphan;
	uint32_t creator = 0;
	try {
		std::unique_ptr<IndexStore> store = IndexStore::open(file.path, store_options());
		creator = store->cached_meta().identity.creator_xid;
	} catch (const Error &) {
		return file_age(file.path) < kYoungFileSeconds ? Verdict::Busy : Verdict::Orphan;
	}
	if (TransactionIdIsValid(creator) &&
		pg_call([&] { return TransactionIdIsInProgress(static_cast<TransactionId>(creator)); }))
		return Verdict::Busy;
	pg_call([] { AcceptInvalidationMessages(); });
	return catalog_owns(file) ? Verdict::Keep : Verdict::Orphan;
}

std::vector<OrphanFile>
sweep(bool remove)
{
	std::vector<OrphanFile> result;
	for (const FoundFile &file : find_files(MyDatabaseId)) {
		if (judge(file) != Verdict::Orphan)
			continue;
		int64 bytes = file_size(file.path) + file_size(file.path + kLockSuffix);
		if (remove) {
			if (!IndexStore::remove_files(file.path) && errno != ENOENT)
				continue;
			pg_call([&] { elog(LOG, "removed orphaned hannoy index file \"%s\"", file.path.c_str()); });
		}
		result.push_back(OrphanFile{file.path, bytes});
	}
	return result;
}

/* At most once per process, and once per hannoy.orphan_sweep_interval per database (the
 * mtime of a stamp file in the database directory), removes orphaned files. Never raises. */
void
maybe_sweep_orphans()
{
	if (swept_this_process || orphan_sweep_interval < 0)
		return;
	swept_this_process = true;
	if (IsParallelWorker() || IsInParallelMode() || RecoveryInProgress() || !IsTransactionState() ||
		!OidIsValid(MyDatabaseId))
		return;
	try {
		std::string stamp = database_directory(MyDatabaseTableSpace, MyDatabaseId) + "/" + kSweepStamp;
		struct stat st;
		time_t now = ::time(nullptr);
		if (orphan_sweep_interval > 0 && ::stat(stamp.c_str(), &st) == 0 &&
			now - st.st_mtime < static_cast<time_t>(orphan_sweep_interval))
			return;
		int fd = ::open(stamp.c_str(), O_WRONLY | O_CREAT, 0600);
		if (fd >= 0) {
			::futimens(fd, nullptr);
			::close(fd);
		}
		sweep(true);
	} catch (const Error &) {
		/* Best effort: the next interval or hannoy_cleanup_orphans() retries. PostgreSQL
		 * errors (a cancel) propagate. */
	}
}

/* ---- CREATE DATABASE ------------------------------------------------------------------------ */

bool
copy_file(const std::string &from, const std::string &to)
{
	int in = ::open(from.c_str(), O_RDONLY);
	if (in < 0)
		return false;
	int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (out < 0) {
		::close(in);
		return false;
	}
	std::vector<char> buffer(size_t(1) << 20);
	bool ok = true;
	for (;;) {
		ssize_t n = ::read(in, buffer.data(), buffer.size());
		if (n < 0) {
			ok = false;
			break;
		}
		if (n == 0)
			break;
		for (ssize_t done = 0; done < n;) {
			ssize_t w = ::write(out, buffer.data() + done, static_cast<size_t>(n - done));
			if (w <= 0) {
				ok = false;
				break;
			}
			done += w;
		}
		if (!ok)
			break;
	}
	if (ok && ::fsync(out) != 0)
		ok = false;
	::close(in);
	::close(out);
	if (!ok)
		::unlink(to.c_str());
	return ok;
}

Oid
database_tablespace(Oid database)
{
	return pg_call([&] {
		HeapTuple tuple = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(database));
		if (!HeapTupleIsValid(tuple))
			return InvalidOid;
		Oid result = reinterpret_cast<Form_pg_database>(GETSTRUCT(tuple))->dattablespace;
		ReleaseSysCache(tuple);
		return result;
	});
}

/*
 * CREATE DATABASE copies the template's relation files (STRATEGY = WAL_LOG, the default,
 * copies nothing else; FILE_COPY copies whole directories). The template has no connection
 * and CREATE DATABASE holds its lock until commit, so its hannoy files are at rest: copy those
 * the new database lacks, next to the relation files they belong to. The copies keep their
 * identity: the new database has the same index OIDs and relation files.
 */
void
copy_template_files(CreatedbStmt *stmt)
{
	const char *template_name = "template1";
	ListCell *cell;
	foreach (cell, stmt->options) {
		DefElem *option = static_cast<DefElem *>(lfirst(cell));
		if (strcmp(option->defname, "template") == 0)
			template_name = pg_call([&] { return defGetString(option); });
	}
	Oid source = pg_call([&] { return get_database_oid(template_name, true); });
	Oid target = pg_call([&] { return get_database_oid(stmt->dbname, true); });
	if (!OidIsValid(source) || !OidIsValid(target))
		return;
	Oid source_default = database_tablespace(source);
	Oid target_default = database_tablespace(target);
	int copied = 0;
	for (const FoundFile &file : find_files(source)) {
		if (!file.has_data)
			continue;
		Oid tablespace = file.tablespace == source_default ? target_default : file.tablespace;
		std::string dir = database_directory(tablespace, target);
		struct stat st;
		if (::stat(dir.c_str(), &st) != 0)
			continue; /* no relation of the new database there */
		std::string to = dir + "/" + file_name(file.index_oid, file.relfilenode);
		if (::stat(to.c_str(), &st) == 0)
			continue; /* FILE_COPY copied it already */
		if (!copy_file(file.path, to)) {
			int saved = errno;
			pg_call([&] {
				errno = saved;
				ereport(WARNING, (errmsg("could not copy hannoy index file \"%s\" to \"%s\": %m",
										 file.path.c_str(), to.c_str()),
								  errhint("REINDEX the index in the new database.")));
			});
			continue;
		}
		fsync_directory(dir);
		copied++;
	}
	if (copied > 0)
		pg_call(
			[&] { elog(DEBUG1, "copied %d hannoy index files into database \"%s\"", copied, stmt->dbname); });
}

void
process_utility(PlannedStmt *pstmt, const char *query, bool read_only_tree, ProcessUtilityContext context,
				ParamListInfo params, QueryEnvironment *env, DestReceiver *dest, QueryCompletion *qc)
{
	if (previous_process_utility != nullptr)
		previous_process_utility(pstmt, query, read_only_tree, context, params, env, dest, qc);
	else
		standard_ProcessUtility(pstmt, query, read_only_tree, context, params, env, dest, qc);
	if (IsA(pstmt->utilityStmt, CreatedbStmt))
		hannoy_guarded([&] { copy_template_files(reinterpret_cast<CreatedbStmt *>(pstmt->utilityStmt)); });
}

/* ---- Unlogged indexes ----------------------------------------------------------------------- */

/*
 * After a crash, an unlogged index's relation is reset from its init fork, whose metapage is
 * flagged kMetapageEmptyInit: its storage file is from before the crash, like the table's
 * lost rows. The first backend to open the index replaces it with an empty file, under the
 * writer lock, and writes a new metapage (unlogged: not WAL-logged).
 */
void
reset_unlogged_index(Relation index)
{
	lock_index_writer(index);
	try {
		if (index->rd_amcache != nullptr) {
			pfree(index->rd_amcache);
			index->rd_amcache = nullptr;
		}
		Metapage meta = pg_call([&] { return read_metapage(index); });
		if (meta.flags & kMetapageEmptyInit) {
			Oid oid = RelationGetRelid(index);
			forget_index_store(oid);
			BuildParams params = pg_call([&] { return index_build_params(index); });
			IndexMeta initial;
			pg_call([&] {
				pg_strong_random(initial.identity.uuid.data(), initial.identity.uuid.size());
				initial.identity.system_identifier = GetSystemIdentifier();
			});
			initial.identity.index_oid = oid;
			initial.identity.relfilenode = HANNOY_RELFILENUMBER(index);
			initial.identity.database_oid = HANNOY_DATABASE(index);
			initial.identity.tablespace_oid = HANNOY_TABLESPACE(index);
			initial.params.metric = static_cast<Metric>(meta.metric);
			initial.params.quantization = params.quantization;
			initial.params.dims = 0;
			initial.params.m = static_cast<uint16_t>(params.m);
			initial.params.ef_construction = static_cast<uint16_t>(params.ef_construction);
			initial.level_seed = kLevelSeed;
			std::string path = index_file_path(index);
			std::unique_ptr<IndexStore> store = IndexStore::create(path, initial, store_options());
			store->finish_build();
			store.reset();
			meta.flags &= ~static_cast<uint32>(kMetapageEmptyInit);
			memcpy(meta.uuid, initial.identity.uuid.data(), sizeof(meta.uuid));
			meta.index_oid = oid;
			meta.relfilenode = HANNOY_RELFILENUMBER(index);
			meta.dims = 0;
			meta.quantization = static_cast<uint8>(params.quantization);
			meta.m = static_cast<uint16>(params.m);
			meta.ef_construction = static_cast<uint16>(params.ef_construction);
			pg_call([&] {
				write_metapage(index, MAIN_FORKNUM, meta);
				ereport(LOG, (errmsg("hannoy index \"%s\" was reset to empty after crash recovery",
									 RelationGetRelationName(index))));
			});
		}
	} catch (...) {
		unlock_index_writer(index);
		throw;
	}
	unlock_index_writer(index);
}

} // namespace

std::string
index_file_path(Relation index)
{
	return database_directory(HANNOY_TABLESPACE(index), HANNOY_DATABASE(index)) + "/" +
		   file_name(RelationGetRelid(index), HANNOY_RELFILENUMBER(index));
}

IndexStore::Options
store_options()
{
	IndexStore::Options options;
	/* Every backend and worker may run a few scans of one index at once. */
	options.max_readers = static_cast<unsigned>(MaxBackends) * 4 + 16;
	options.max_map_size = static_cast<size_t>(max_index_size_mb) << 20;
	if (!RecoveryInProgress())
		options.timeline = static_cast<uint16_t>(GetWALInsertionTimeLine());
	return options;
}

IndexStore &
open_index_store(Relation index)
{
	close_stale_stores();
	Oid oid = RelationGetRelid(index);
	Oid relfilenode = HANNOY_RELFILENUMBER(index);
	Metapage meta = pg_call([&] { return read_metapage(index); });
	auto &cache = stores();
	auto it = cache.find(oid);
	if (it != cache.end() && it->second.relfilenode == relfilenode && !it->second.stale) {
		it->second.last_used = ++use_clock;
		it->second.store->env().set_max_map_size(static_cast<size_t>(max_index_size_mb) << 20);
		return *it->second.store;
	}
	if (it != cache.end()) {
		if (it->second.store->env().live_txns != 0)
			throw Error(ErrorCode::Internal, "hannoy index file reopened while in use");
		close_entry(it);
	}
	maybe_sweep_orphans();

	const char *name = RelationGetRelationName(index);
	if ((meta.flags & kMetapageEmptyInit) && index->rd_rel->relpersistence == RELPERSISTENCE_UNLOGGED &&
		!RecoveryInProgress() && !IsParallelWorker() && !IsInParallelMode()) {
		reset_unlogged_index(index);
		meta = pg_call([&] { return read_metapage(index); });
	}
	if (meta.flags & kMetapageEmptyInit)
		throw Error(ErrorCode::Unavailable, format("hannoy index \"%s\" was reset by crash recovery", name),
					"", "REINDEX the index.");
	std::string path = index_file_path(index);
	std::unique_ptr<IndexStore> store;
	try {
		store = IndexStore::open(path, store_options());
	} catch (const lmdb::FdLimitError &) {
		throw;
	} catch (const Error &e) {
		if (e.code() == ErrorCode::Unavailable)
			throw Error(ErrorCode::Unavailable,
						format("hannoy index \"%s\" is not available on this server", name),
						format("Its storage file \"%s\" is missing: %s.", path.c_str(), e.what()),
						"REINDEX the index to rebuild its storage.");
		throw;
	}
	const Identity &identity = store->cached_meta().identity;
	if (memcmp(identity.uuid.data(), meta.uuid, sizeof(meta.uuid)) != 0 || identity.index_oid != oid ||
		identity.relfilenode != relfilenode)
		throw Error(ErrorCode::Unavailable,
					format("hannoy index \"%s\" does not match its storage file", name),
					format("The file \"%s\" was built for another index or another build of this index.",
						   path.c_str()),
					"REINDEX the index to rebuild its storage.");
	if (meta.seq > store->cached_meta().seq)
		throw Error(ErrorCode::Unavailable, format("hannoy index \"%s\" has a stale storage file", name),
					format("The file \"%s\" holds changes up to number %llu, the index records %llu: it was "
						   "restored or copied from an earlier state and lacks rows committed since.",
						   path.c_str(), static_cast<unsigned long long>(store->cached_meta().seq),
						   static_cast<unsigned long long>(meta.seq)),
					"REINDEX the index to rebuild its storage.");
	const IndexMeta &file = store->cached_meta();
	if (file.seq > meta.seq && file.timeline != 0 && !RecoveryInProgress() &&
		file.timeline != static_cast<uint16_t>(GetWALInsertionTimeLine()))
		throw Error(
			ErrorCode::Unavailable,
			format("hannoy index \"%s\" has a storage file from another timeline", name),
			format("The file \"%s\" holds changes up to number %llu, made on timeline %u, the index "
				   "records %llu: it may index rows this server's history does not have (point-in-time "
				   "recovery, pg_rewind).",
				   path.c_str(), static_cast<unsigned long long>(file.seq), file.timeline,
				   static_cast<unsigned long long>(meta.seq)),
			"REINDEX the index to rebuild its storage.");
	if (!(store->cached_meta().flags & kMetaBuildComplete))
		throw Error(ErrorCode::Unavailable, format("hannoy index \"%s\" was not completely built", name), "",
					"REINDEX the index.");
	if (!exit_callback_registered) {
		pg_call([] { on_proc_exit(close_all_stores, 0); });
		exit_callback_registered = true;
	}
	OpenStore &entry = cache[oid];
	entry.store = std::move(store);
	entry.relfilenode = relfilenode;
	entry.path = path;
	entry.stale = false;
	entry.prefetch_pending = true;
	entry.last_used = ++use_clock;
	return *entry.store;
}

bool
index_store_available(Relation index)
{
	/* A full check (the file opens and matches the metapage); it is cached per process, so
	 * only the first plan in a backend pays for opening the file. */
	try {
		if (RecoveryInProgress())
			return false; /* storage files are not replicated: standbys answer by sequential scan */
		open_index_store(index);
		return true;
	} catch (...) {
		return false;
	}
}

void
prefetch_after_first_scan(Relation index)
{
	auto &cache = stores();
	auto it = cache.find(RelationGetRelid(index));
	if (it == cache.end() || !it->second.prefetch_pending || it->second.stale)
		return;
	it->second.prefetch_pending = false;
	if (prefetch_memory_kb <= 0)
		return;
	/* Read-ahead advice: a failure costs the speed-up, not the query. */
	try {
		prefetch_search_start(*it->second.store, size_t(prefetch_memory_kb) * 1024);
	} catch (const Error &) {
	}
}

void
forget_index_store(Oid index_oid)
{
	auto &cache = stores();
	auto it = cache.find(index_oid);
	if (it == cache.end())
		return;
	if (it->second.store->env().live_txns == 0)
		close_entry(it);
	else
		it->second.stale = true;
}

bool
close_idle_index_store()
{
	/* The least recently used file that no transaction of this process uses. */
	auto &cache = stores();
	auto victim = cache.end();
	for (auto it = cache.begin(); it != cache.end(); ++it)
		if (it->second.store->env().live_txns == 0 &&
			(victim == cache.end() || it->second.last_used < victim->second.last_used))
			victim = it;
	if (victim == cache.end())
		return false;
	close_entry(victim);
	return true;
}

void
remember_created_file(const std::string &path, Oid)
{
	pending().push_back(PendingFile{path, GetCurrentSubTransactionId(), false});
}

void
remove_other_files_at_commit(Oid index_oid, Oid, Oid database, const std::string &keep)
{
	/* Every tablespace: REINDEX (TABLESPACE ...) builds the new file in another directory. */
	for (const FoundFile &file : find_files(database, index_oid))
		if (file.path != keep)
			schedule_removal(file.path, InvalidOid);
}

uint64
index_file_bytes(Relation index)
{
	std::string path = index_file_path(index);
	return static_cast<uint64>(file_size(path) + file_size(path + kLockSuffix));
}

std::vector<OrphanFile>
cleanup_orphan_files(bool remove)
{
	return sweep(remove);
}

void
init_storage_lifecycle()
{
	DefineCustomIntVariable("hannoy.orphan_sweep_interval",
							"Minimum seconds between automatic sweeps of orphaned hannoy index files.",
							"A backend sweeps its database when it first opens a hannoy index and the last "
							"sweep is older than this. 0 sweeps at every first open, -1 never.",
							&orphan_sweep_interval, 600, -1, INT_MAX, PGC_SUSET, GUC_UNIT_S, nullptr, nullptr,
							nullptr);
	previous_object_access_hook = object_access_hook;
	object_access_hook = object_access;
	previous_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = process_utility;
	RegisterXactCallback(xact_callback, nullptr);
	RegisterSubXactCallback(subxact_callback, nullptr);
	CacheRegisterRelcacheCallback(relcache_callback, 0);
}

void
lock_index_writer(Relation index)
{
	pg_call([&] { LockPage(index, kMetapageBlock, ExclusiveLock); });
}

void
unlock_index_writer(Relation index)
{
	/* Record the file's change counter on the metapage, after the change is durable in the
	 * file: a copy of the file older than the WAL is then recognised as stale. */
	auto it = stores().find(RelationGetRelid(index));
	if (it != stores().end() && it->second.relfilenode == HANNOY_RELFILENUMBER(index))
		pg_call([&] { advance_metapage_seq(index, it->second.store->cached_meta().seq); });
	UnlockPage(index, kMetapageBlock, ExclusiveLock);
}

} // namespace hannoy::pg
