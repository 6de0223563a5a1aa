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
 * the files of a dropped or rebuilt index are removed when the dropping transaction commits.
 * Each process opens a file at most once (LMDB forbids opening one file twice per process)
 * and only after fork, lazily, and closes it when the index's relcache entry is invalidated.
 */
#include "hannoy.hpp"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <unordered_map>
#include <vector>

extern "C" {
#include "commands/defrem.h"
#include "utils/inval.h"
}

namespace hannoy::pg
{

namespace
{

constexpr char kFilePrefix[] = "pgsql_tmp_hannoy_";

struct OpenStore {
	std::unique_ptr<IndexStore> store;
	Oid relfilenode;
	std::string path;
	bool stale = false;
	uint64_t last_used = 0; /* for closing the least recently used file when out of descriptors */
};

struct PendingFile {
	std::string path;
	SubTransactionId subxact;
	bool remove_at_commit; /* true: file of a dropped/rebuilt index; false: created here */
};

/* Heap-allocated and never destroyed: no static destructors may run at proc_exit. */
std::unordered_map<Oid, OpenStore> *open_stores = nullptr;
std::vector<PendingFile> *pending_files = nullptr;
bool exit_callback_registered = false;
uint64_t use_clock = 0;
object_access_hook_type previous_object_access_hook = nullptr;

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
	for (const PendingFile &file : files)
		if (file.remove_at_commit == committed)
			remove_file_quietly(file.path);
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

void
object_access(ObjectAccessType access, Oid class_id, Oid object_id, int sub_id, void *arg)
{
	if (previous_object_access_hook != nullptr)
		previous_object_access_hook(access, class_id, object_id, sub_id, arg);
	if (access != OAT_DROP || class_id != RelationRelationId || sub_id != 0)
		return;
	hannoy_guarded([&] {
		Oid tablespace = InvalidOid;
		bool ours = pg_call([&] {
			HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(object_id));
			if (!HeapTupleIsValid(tuple))
				return false;
			Form_pg_class form = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple));
			bool result = is_hannoy_index(form);
			tablespace = OidIsValid(form->reltablespace) ? form->reltablespace : MyDatabaseTableSpace;
			ReleaseSysCache(tuple);
			return result;
		});
		if (ours)
			remove_other_files_at_commit(object_id, tablespace, MyDatabaseId, std::string());
	});
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

	const char *name = RelationGetRelationName(index);
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
remove_other_files_at_commit(Oid index_oid, Oid tablespace, Oid database, const std::string &keep)
{
	std::string dir = database_directory(tablespace, database);
	std::string prefix = format("%s%u_", kFilePrefix, index_oid);
	std::vector<std::string> found;
	if (DIR *d = ::opendir(dir.c_str())) {
		while (struct dirent *entry = ::readdir(d)) {
			std::string name = entry->d_name;
			if (name.compare(0, prefix.size(), prefix) != 0)
				continue;
			if (name.size() > 5 && name.compare(name.size() - 5, 5, "-lock") == 0)
				name.resize(name.size() - 5);
			std::string path = dir + "/" + name;
			if (path != keep && std::find(found.begin(), found.end(), path) == found.end())
				found.push_back(path);
		}
		::closedir(d);
	}
	SubTransactionId subxact = GetCurrentSubTransactionId();
	for (const std::string &path : found)
		pending().push_back(PendingFile{path, subxact, true});
}

void
init_storage_lifecycle()
{
	previous_object_access_hook = object_access_hook;
	object_access_hook = object_access;
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
