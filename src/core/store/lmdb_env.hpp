/*
 * lmdb_env.hpp: RAII over LMDB environments and transactions.
 *
 * Rules this layer enforces for the rest of the core:
 *  - one MDB_env per file per process, opened with MDB_NOTLS so a backend may hold several
 *    read transactions (nested index scans) and a write transaction at once;
 *  - a transaction never outlives the call into the core that began it, so the map can be
 *    grown (which remaps it) between calls without invalidating anyone's pointers;
 *  - every LMDB error becomes a hannoy::Error; MDB_MAP_FULL becomes MapFullError so that
 *    run_write() can grow the map and retry the whole write;
 *  - every open environment holds kFdsPerEnv file descriptors reserved through the
 *    process's descriptor accounting (set_fd_accounting), so a host program with a
 *    descriptor budget (PostgreSQL's max_files_per_process) keeps it honest.
 */
#pragma once

#include <lmdb.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "../error.hpp"

namespace hannoy::lmdb
{

/// Thrown when a write did not fit in the current map; run_write() grows and retries.
class MapFullError : public Error
{
public:
	MapFullError() : Error(ErrorCode::StorageFull, "hannoy index storage map is full") {}
};

/// Thrown by Env::open when the process's descriptor budget has no room for another file
/// and no idle environment could be closed to make some.
class FdLimitError : public Error
{
public:
	explicit FdLimitError(const std::string &path);
};

/// File descriptors LMDB keeps open per read-write environment: the data file, the lock
/// file and a second, synchronous descriptor of the data file for meta page writes.
constexpr int kFdsPerEnv = 3;

/// Descriptor accounting of the host process: `acquire` reserves one descriptor and returns
/// false when the budget is exhausted, `release` gives one back, `make_room` (optional)
/// closes an idle environment and returns false when there is none. Without accounting
/// (the default) nothing is counted.
struct FdAccounting {
	bool (*acquire)() = nullptr;
	void (*release)() = nullptr;
	bool (*make_room)() = nullptr;
};
void set_fd_accounting(const FdAccounting &accounting);

/// Converts an LMDB return code into a thrown hannoy::Error (never returns).
[[noreturn]] void throw_lmdb(int rc, const char *operation, const std::string &path);

/// Throws unless rc is MDB_SUCCESS.
inline void
check(int rc, const char *operation, const std::string &path)
{
	if (rc != MDB_SUCCESS)
		throw_lmdb(rc, operation, path);
}

class Env
{
public:
	struct Options {
		/// Reader slots; only takes effect when this process is the first to open the file.
		unsigned max_readers = 126;
		/// Create the file if it does not exist.
		bool create = false;
		/// Skip fsync at commit (bulk builds, which sync once at the end).
		bool no_sync = false;
		/// Upper bound for map growth, in bytes.
		size_t max_map_size = size_t(1) << 40;
	};

	/// Opens (or creates) the single-file environment at `path` (MDB_NOSUBDIR: the lock file
	/// is `path` + "-lock"). Throws Unavailable if the file is missing and create is false.
	static std::unique_ptr<Env> open(const std::string &path, const Options &options, unsigned max_dbs);
	~Env();

	Env(const Env &) = delete;
	Env &operator=(const Env &) = delete;

	MDB_env *raw() const { return env_; }
	const std::string &path() const { return path_; }
	unsigned page_size() const { return page_size_; }
	size_t map_size() const { return map_size_; }
	/// Times the map was resized in this process: each may have moved it.
	uint64_t remaps() const { return remaps_; }
	/// Bytes the data file occupies on disk.
	uint64_t file_bytes() const;

	/// Forces everything committed so far to disk.
	void sync();
	/// Turns per-commit fsync off (bulk build) or back on.
	void set_no_sync(bool no_sync);
	/// Doubles the map (bounded by max_map_size). Only legal with no live transaction.
	void grow();
	/// Changes the bound of later growth (never shrinks the current map).
	void set_max_map_size(size_t bytes) { max_map_size_ = bytes; }
	size_t max_map_size() const { return max_map_size_; }
	/// Picks up a map size grown by another process (after MDB_MAP_RESIZED).
	void adopt_external_size();
	/// Releases reader slots left behind by dead processes; returns how many.
	int clear_stale_readers();

	/// Live transactions begun from this environment in this process.
	int live_txns = 0;

private:
	Env(MDB_env *env, std::string path, const Options &options);

	MDB_env *env_;
	std::string path_;
	unsigned page_size_ = 4096;
	size_t map_size_ = 0;
	uint64_t remaps_ = 0;
	size_t max_map_size_;
	int reserved_fds_ = 0;
};

/// Work a write transaction must do just before it commits (e.g. write records derived from
/// the changes made in it). Owned by the transaction; dropped with it when aborted.
class CommitHook
{
public:
	virtual ~CommitHook() = default;
	/// Runs inside the transaction, before it commits; may write and may throw (the
	/// transaction then aborts, and MapFullError is retried by run_write()).
	virtual void before_commit() = 0;
};

/// A transaction; aborted by the destructor unless committed.
class Txn
{
public:
	Txn(Env &env, bool read_only);
	~Txn();

	Txn(const Txn &) = delete;
	Txn &operator=(const Txn &) = delete;

	void commit();
	void abort() noexcept;

	MDB_txn *raw() const { return txn_; }
	Env &env() const { return env_; }
	bool read_only() const { return read_only_; }
	/// Snapshot id: equal ids mean identical database contents.
	uint64_t id() const { return mdb_txn_id(txn_); }

	/// Looks up a key; false when absent.
	bool get(MDB_dbi dbi, const void *key, size_t key_len, MDB_val *value) const;
	void put(MDB_dbi dbi, const void *key, size_t key_len, const void *value, size_t value_len,
			 unsigned flags = 0);
	/// Reserves `value_len` bytes for the key and returns where to write them.
	void *reserve(MDB_dbi dbi, const void *key, size_t key_len, size_t value_len, unsigned flags = 0);
	/// Deletes a key; false when it was absent.
	bool del(MDB_dbi dbi, const void *key, size_t key_len);

	/// The hook commit() runs first (write transactions only), or nullptr.
	CommitHook *commit_hook() const { return hook_.get(); }
	void set_commit_hook(std::unique_ptr<CommitHook> hook) { hook_ = std::move(hook); }

private:
	Env &env_;
	MDB_txn *txn_ = nullptr;
	bool read_only_;
	std::unique_ptr<CommitHook> hook_;
};

/// A cursor over one database inside a transaction.
class Cursor
{
public:
	Cursor(Txn &txn, MDB_dbi dbi);
	~Cursor();
	Cursor(const Cursor &) = delete;
	Cursor &operator=(const Cursor &) = delete;

	/// Positions at the first key >= `key` (or the first key when key is null); false at the end.
	bool seek(const void *key, size_t key_len, MDB_val *k, MDB_val *v);
	/// Moves to the next key; false at the end.
	bool next(MDB_val *k, MDB_val *v);
	/// Moves to the last key; false when empty.
	bool last(MDB_val *k, MDB_val *v);

private:
	MDB_cursor *cursor_ = nullptr;
	const std::string &path_;
};

/// Runs `fn(txn)` in a write transaction and commits it. If the map fills up, the
/// transaction is aborted, the map grown, and `fn` run again from scratch: `fn` must only
/// depend on its inputs and on what it reads through `txn`.
template <typename Fn>
void
run_write(Env &env, Fn &&fn)
{
	for (;;) {
		try {
			Txn txn(env, false);
			fn(txn);
			txn.commit();
			return;
		} catch (const MapFullError &) {
			env.grow();
		}
	}
}

} // namespace hannoy::lmdb
