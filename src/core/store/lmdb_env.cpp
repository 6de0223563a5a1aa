/*
 * lmdb_env.cpp: LMDB environment and transaction wrappers, map growth and error mapping.
 */
#include "lmdb_env.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "../pure_cpp.hpp"

namespace hannoy::lmdb
{

namespace
{

FdAccounting fd_accounting;

} // namespace

FdLimitError::FdLimitError(const std::string &path)
	: Error(ErrorCode::LimitExceeded,
			format("too many hannoy index files open in this process to open \"%s\"", path.c_str()),
			format("Each open hannoy index uses %d file descriptors, counted against the process's limit.",
				   kFdsPerEnv),
			"Raise max_files_per_process, or use fewer hannoy indexes in one session.")
{
}

void
set_fd_accounting(const FdAccounting &accounting)
{
	fd_accounting = accounting;
}

void
throw_lmdb(int rc, const char *operation, const std::string &path)
{
	switch (rc) {
	case MDB_MAP_FULL:
		throw MapFullError();
	case ENOSPC:
	case EDQUOT:
	case EFBIG: /* the file size limit of the process (RLIMIT_FSIZE) */
		throw Error(ErrorCode::StorageFull,
					format("could not write hannoy index file \"%s\": %s", path.c_str(), std::strerror(rc)),
					"", "Free disk space, then retry.");
	case EIO:
		/* LMDB reports a write cut short (a disk filling up) as EIO, like a failing device. */
		throw Error(ErrorCode::Storage,
					format("could not write hannoy index file \"%s\": %s", path.c_str(), std::strerror(rc)),
					format("%s failed: a write was cut short or failed, so the disk may be full or failing. "
						   "Nothing of the failed operation was committed.",
						   operation),
					"Free disk space or check the storage device, then retry.");
	case MDB_READERS_FULL:
		throw Error(ErrorCode::Storage,
					format("too many concurrent readers of hannoy index file \"%s\"", path.c_str()),
					"The reader table of the index file is full.",
					"Restart the server so the reader table is sized for max_connections.");
	case MDB_TXN_FULL:
		throw Error(ErrorCode::Storage,
					format("hannoy index write transaction too large for \"%s\"", path.c_str()));
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		throw Error(ErrorCode::Corrupted,
					format("hannoy index file \"%s\" is corrupted: %s", path.c_str(), mdb_strerror(rc)), "",
					"REINDEX the index.");
	case ENOENT:
		throw Error(ErrorCode::Unavailable, format("hannoy index file \"%s\" does not exist", path.c_str()),
					"", "REINDEX the index.");
	default:
		throw Error(ErrorCode::Storage, format("hannoy index file \"%s\": %s failed: %s", path.c_str(),
											   operation, mdb_strerror(rc)));
	}
}

namespace
{

size_t
round_up(size_t value, size_t unit)
{
	return (value + unit - 1) / unit * unit;
}

constexpr size_t kMinMapSize = size_t(64) << 20;

} // namespace

Env::Env(MDB_env *env, std::string path, const Options &options)
	: env_(env), path_(std::move(path)), max_map_size_(options.max_map_size)
{
}

std::unique_ptr<Env>
Env::open(const std::string &path, const Options &options, unsigned max_dbs)
{
	struct stat st;
	bool exists = ::stat(path.c_str(), &st) == 0;
	if (!exists && !options.create)
		throw Error(ErrorCode::Unavailable, format("hannoy index file \"%s\" does not exist", path.c_str()),
					"", "REINDEX the index to rebuild its storage.");

	/* Reserve the descriptors first: the destructor gives back what was reserved. */
	std::unique_ptr<Env> env(new Env(nullptr, path, options));
	if (fd_accounting.acquire != nullptr)
		while (env->reserved_fds_ < kFdsPerEnv) {
			if (fd_accounting.acquire())
				env->reserved_fds_++;
			else if (fd_accounting.make_room == nullptr || !fd_accounting.make_room())
				throw FdLimitError(path);
		}
	MDB_env *raw = nullptr;
	check(mdb_env_create(&raw), "mdb_env_create", path);
	env->env_ = raw;
	check(mdb_env_set_maxdbs(raw, max_dbs), "mdb_env_set_maxdbs", path);
	check(mdb_env_set_maxreaders(raw, options.max_readers), "mdb_env_set_maxreaders", path);

	/* Map size is address space, not disk: twice the file, at least 64 MiB, at most the
	 * bound (but never less than the file, which must stay readable). */
	size_t file = exists ? static_cast<size_t>(st.st_size) : 0;
	long sys_page = ::sysconf(_SC_PAGESIZE);
	size_t page = sys_page > 0 ? static_cast<size_t>(sys_page) : 4096;
	size_t map = std::min(std::max(kMinMapSize, file * 2), std::max(options.max_map_size, file));
	map = round_up(map, page);
	check(mdb_env_set_mapsize(raw, map), "mdb_env_set_mapsize", path);

	unsigned flags = MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD;
	if (options.no_sync)
		flags |= MDB_NOSYNC;
	check(mdb_env_open(raw, path.c_str(), flags, 0600), "mdb_env_open", path);

	MDB_envinfo info;
	check(mdb_env_info(raw, &info), "mdb_env_info", path);
	env->map_size_ = info.me_mapsize;
	MDB_stat stat;
	check(mdb_env_stat(raw, &stat), "mdb_env_stat", path);
	env->page_size_ = stat.ms_psize;
	int dead = 0;
	mdb_reader_check(raw, &dead);
	return env;
}

Env::~Env()
{
	if (env_ != nullptr)
		mdb_env_close(env_);
	if (fd_accounting.release != nullptr)
		for (; reserved_fds_ > 0; reserved_fds_--)
			fd_accounting.release();
}

uint64_t
Env::file_bytes() const
{
	struct stat st;
	if (::stat(path_.c_str(), &st) != 0)
		return 0;
	return static_cast<uint64_t>(st.st_size);
}

void
Env::sync()
{
	check(mdb_env_sync(env_, 1), "mdb_env_sync", path_);
}

void
Env::set_no_sync(bool no_sync)
{
	check(mdb_env_set_flags(env_, MDB_NOSYNC, no_sync ? 1 : 0), "mdb_env_set_flags", path_);
}

void
Env::grow()
{
	if (live_txns != 0)
		throw Error(ErrorCode::Internal, "cannot grow hannoy index map while a transaction is open");
	if (map_size_ >= max_map_size_)
		throw Error(ErrorCode::StorageFull,
					format("hannoy index file \"%s\" reached its maximum size of %zu bytes", path_.c_str(),
						   map_size_),
					"Nothing was written by the failed operation.", "Raise hannoy.max_index_size.");
	size_t next = std::min(max_map_size_, map_size_ * 2);
	check(mdb_env_set_mapsize(env_, next), "mdb_env_set_mapsize", path_);
	MDB_envinfo info;
	check(mdb_env_info(env_, &info), "mdb_env_info", path_);
	map_size_ = info.me_mapsize;
	remaps_++;
}

void
Env::adopt_external_size()
{
	check(mdb_env_set_mapsize(env_, 0), "mdb_env_set_mapsize", path_);
	MDB_envinfo info;
	check(mdb_env_info(env_, &info), "mdb_env_info", path_);
	map_size_ = info.me_mapsize;
	remaps_++;
}

int
Env::clear_stale_readers()
{
	int dead = 0;
	check(mdb_reader_check(env_, &dead), "mdb_reader_check", path_);
	return dead;
}

Txn::Txn(Env &env, bool read_only) : env_(env), read_only_(read_only)
{
	for (int attempt = 0;; attempt++) {
		int rc = mdb_txn_begin(env.raw(), nullptr, read_only ? MDB_RDONLY : 0, &txn_);
		if (rc == MDB_MAP_RESIZED && attempt < 3 && env.live_txns == 0) {
			env.adopt_external_size();
			continue;
		}
		check(rc, "mdb_txn_begin", env.path());
		break;
	}
	env_.live_txns++;
}

Txn::~Txn()
{
	abort();
}

void
Txn::commit()
{
	if (txn_ == nullptr)
		throw Error(ErrorCode::Internal, "commit of a finished hannoy transaction");
	if (hook_ != nullptr) {
		/* Runs once: a throw leaves the transaction to be aborted, never committed. */
		std::unique_ptr<CommitHook> hook = std::move(hook_);
		hook->before_commit();
	}
	int rc = mdb_txn_commit(txn_);
	txn_ = nullptr;
	env_.live_txns--;
	check(rc, "mdb_txn_commit", env_.path());
}

void
Txn::abort() noexcept
{
	if (txn_ == nullptr)
		return;
	mdb_txn_abort(txn_);
	txn_ = nullptr;
	env_.live_txns--;
}

bool
Txn::get(MDB_dbi dbi, const void *key, size_t key_len, MDB_val *value) const
{
	MDB_val k{key_len, const_cast<void *>(key)};
	int rc = mdb_get(txn_, dbi, &k, value);
	if (rc == MDB_NOTFOUND)
		return false;
	check(rc, "mdb_get", env_.path());
	return true;
}

void
Txn::put(MDB_dbi dbi, const void *key, size_t key_len, const void *value, size_t value_len, unsigned flags)
{
	MDB_val k{key_len, const_cast<void *>(key)};
	MDB_val v{value_len, const_cast<void *>(value)};
	check(mdb_put(txn_, dbi, &k, &v, flags), "mdb_put", env_.path());
}

void *
Txn::reserve(MDB_dbi dbi, const void *key, size_t key_len, size_t value_len, unsigned flags)
{
	MDB_val k{key_len, const_cast<void *>(key)};
	MDB_val v{value_len, nullptr};
	check(mdb_put(txn_, dbi, &k, &v, flags | MDB_RESERVE), "mdb_put", env_.path());
	return v.mv_data;
}

bool
Txn::del(MDB_dbi dbi, const void *key, size_t key_len)
{
	MDB_val k{key_len, const_cast<void *>(key)};
	int rc = mdb_del(txn_, dbi, &k, nullptr);
	if (rc == MDB_NOTFOUND)
		return false;
	check(rc, "mdb_del", env_.path());
	return true;
}

Cursor::Cursor(Txn &txn, MDB_dbi dbi) : path_(txn.env().path())
{
	check(mdb_cursor_open(txn.raw(), dbi, &cursor_), "mdb_cursor_open", path_);
}

Cursor::~Cursor()
{
	if (cursor_ != nullptr)
		mdb_cursor_close(cursor_);
}

bool
Cursor::seek(const void *key, size_t key_len, MDB_val *k, MDB_val *v)
{
	int rc;
	if (key == nullptr) {
		rc = mdb_cursor_get(cursor_, k, v, MDB_FIRST);
	} else {
		k->mv_size = key_len;
		k->mv_data = const_cast<void *>(key);
		rc = mdb_cursor_get(cursor_, k, v, MDB_SET_RANGE);
	}
	if (rc == MDB_NOTFOUND)
		return false;
	check(rc, "mdb_cursor_get", path_);
	return true;
}

bool
Cursor::next(MDB_val *k, MDB_val *v)
{
	int rc = mdb_cursor_get(cursor_, k, v, MDB_NEXT);
	if (rc == MDB_NOTFOUND)
		return false;
	check(rc, "mdb_cursor_get", path_);
	return true;
}

bool
Cursor::last(MDB_val *k, MDB_val *v)
{
	int rc = mdb_cursor_get(cursor_, k, v, MDB_LAST);
	if (rc == MDB_NOTFOUND)
		return false;
	check(rc, "mdb_cursor_get", path_);
	return true;
}

} // namespace hannoy::lmdb
