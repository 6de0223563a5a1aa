/*
 * index_store.hpp: one hannoy index file: its LMDB environment, named databases and the
 * typed reads and writes of the layout in codec.hpp.
 *
 * Writes go through StoreWriter, whose methods are deliberately small, self-describing
 * operations (put this vector, set these links, delete this TID...). Each one is
 * idempotent given its arguments, so a log of them can later be replayed on a standby.
 * The in-links are derived: each list write records how its ids changed and the
 * transaction applies that to the in-links as it commits, so replaying the list writes
 * rebuilds them too.
 */
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bitmap.hpp"
#include "codec.hpp"
#include "lmdb_env.hpp"
#include "residency.hpp"

namespace hannoy
{

class IndexStore
{
public:
	struct Options {
		unsigned max_readers = 126;
		size_t max_map_size = size_t(1) << 40;
		/// Stamped into the meta record by every write from this handle (0: leave as is).
		uint16_t timeline = 0;
	};

	/// Creates a new, empty index file at `path`, replacing any file already there, with
	/// per-commit sync off (call finish_build() to sync and mark it complete).
	static std::unique_ptr<IndexStore> create(const std::string &path, const IndexMeta &initial,
											  const Options &options);
	/// Opens an existing file. Throws Unavailable when missing, Corrupted when unreadable.
	static std::unique_ptr<IndexStore> open(const std::string &path, const Options &options);
	/// Removes an index file and its lock file; returns false if neither existed.
	static bool remove_files(const std::string &path);

	lmdb::Env &env() { return *env_; }
	const std::string &path() const { return env_->path(); }

	MDB_dbi meta_dbi() const { return meta_; }
	MDB_dbi items_dbi() const { return items_; }
	MDB_dbi tids_dbi() const { return tids_; }
	MDB_dbi links_dbi() const { return links_; }
	MDB_dbi vectors_dbi() const { return vectors_; }
	MDB_dbi codes_dbi() const { return codes_; }
	MDB_dbi hashes_dbi() const { return hashes_; }
	MDB_dbi inlinks_dbi() const { return inlinks_; }

	/// Meta as read when the file was opened or last written by this process. Geometry and
	/// parameters never change after creation; counters may be stale.
	const IndexMeta &cached_meta() const { return meta_cache_; }
	void set_cached_meta(const IndexMeta &meta) { meta_cache_ = meta; }

	/// Centroid the binary codes are taken against (empty unless the index is quantized).
	/// Fixed when the index is built (or by its first vector), so caching it is safe.
	const std::vector<float> &centroid() const { return centroid_; }
	void set_cached_centroid(std::vector<float> centroid) { centroid_ = std::move(centroid); }

	/// Changes whenever the map may have moved, invalidating cached pointers.
	uint64_t map_generation() const { return 1 + env_->remaps(); }

	/// Sets the dimension of an index created empty, and the block geometry that follows
	/// from it, in `meta` (which the caller then writes).
	void set_dimensions(IndexMeta &meta, uint32_t dims) const;

	/// Syncs the file and sets kMetaBuildComplete; turns per-commit sync back on.
	void finish_build();

	/// Where the layer-0 list of each item lies in the map, for one read snapshot. A scan
	/// looks up one list per node it expands, and a B-tree descent per list cost as much as
	/// the distances of a search; queries of a read-mostly index share one snapshot, so later
	/// visits of a node are an array read. Entries are tagged with the snapshot they were
	/// found in (no clearing when it changes), hold the list's place as an offset from one
	/// address in the map, and live in chunks allocated on first use, for ids below kMaxItems
	/// only: at most 8 bytes per item.
	class LinkCache
	{
	public:
		static constexpr uint32_t kMaxItems = uint32_t(1) << 22;
		/// Starts a new snapshot: every entry becomes stale. `remapped`: the map moved too.
		void invalidate(bool remapped);
		/// The list of `id` if cached for this snapshot.
		bool find(uint32_t id, const uint8_t **data, size_t *size) const;
		/// Records the list of `id` (ignored when it cannot be represented).
		void store(uint32_t id, const uint8_t *data, size_t size);

	private:
		static constexpr uint32_t kChunkBits = 12;
		static constexpr int kOffsetBits = 42; ///< signed: the anchor may lie anywhere in the map
		static constexpr int kSizeBits = 14;
		static constexpr int kTagBits = 8;
		/* entry: offset from anchor_ | size | tag; 0 means empty (tags start at 1) */
		std::vector<std::unique_ptr<uint64_t[]>> chunks_;
		const uint8_t *anchor_ = nullptr;
		uint8_t tag_ = 1;
	};

	/// Per-process cache of vector block and link list addresses for one read snapshot.
	struct BlockCache {
		uint64_t snapshot = 0;
		uint64_t generation = 0;
		std::vector<VectorRef> vectors; ///< per block: its first slot and its encoding
		std::vector<VectorRef> codes;
		LinkCache links;
	};
	BlockCache &block_cache() { return block_cache_; }
	/// Whether this process's searches of the file read ahead (see residency.hpp).
	ColdReads &cold_reads() { return cold_reads_; }

private:
	explicit IndexStore(std::unique_ptr<lmdb::Env> env) : env_(std::move(env)) {}
	friend class StoreWriter;
	void open_databases(bool create);

	std::unique_ptr<lmdb::Env> env_;
	MDB_dbi meta_ = 0, items_ = 0, tids_ = 0, links_ = 0, vectors_ = 0, codes_ = 0, hashes_ = 0, inlinks_ = 0;
	IndexMeta meta_cache_;
	std::vector<float> centroid_;
	BlockCache block_cache_;
	ColdReads cold_reads_;
	uint16_t timeline_ = 0;
};

/// Typed reads inside one transaction. Pointers returned stay valid until the transaction
/// ends or, in a write transaction, until the same record is written again.
class StoreReader
{
public:
	StoreReader(IndexStore &store, lmdb::Txn &txn);

	IndexStore &store() { return store_; }
	lmdb::Txn &txn() { return txn_; }

	IndexMeta meta() const;
	/// Stored vector of an item (null when its block does not exist) and its encoding.
	VectorRef vector(uint32_t id);
	/// Binary code of an item, or nullptr.
	const uint8_t *code(uint32_t id);
	/// Appends the neighbours of (id, layer) to `out`; false when the record does not exist.
	bool links(uint32_t id, uint8_t layer, std::vector<uint32_t> &out) const;
	/// Appends the items whose list on `layer` holds `id` to `out`, in id order (as committed:
	/// a StoreWriter's own in_links() also sees the changes of its transaction).
	void in_links(uint32_t id, uint8_t layer, std::vector<uint32_t> &out) const;
	/// Items purged since the last walk that made every live item reachable.
	uint64_t purged_since_walk() const;
	/// Reads an item; false when it does not exist (deleted or never written).
	bool item(uint32_t id, ItemRecord *out) const;
	bool has_item(uint32_t id) const;
	/// Item holding a heap TID; false when the TID is not indexed.
	bool item_for_tid(HeapTid tid, uint32_t *id) const;
	/// Items deleted whose links may still exist.
	Bitmap tombstones() const;
	/// The centroid record; empty when absent.
	std::vector<float> centroid() const;
	/// A live item whose stored vector equals `vector` byte for byte and that holds fewer
	/// than `max_tids` heap TIDs (its record is read into `item`), or kNoItem.
	uint32_t find_identical(const uint8_t *vector, size_t max_tids, ItemRecord *item);

	/// Calls fn(tid, item) for every indexed TID with key >= from, in TID order, until fn
	/// returns false. Returns the number visited.
	template <typename Fn> size_t for_each_tid(HeapTid from, Fn &&fn)
	{
		lmdb::Cursor cursor(txn_, store_.tids_dbi());
		MDB_val k, v;
		auto key = tid_key(from);
		size_t visited = 0;
		for (bool ok = cursor.seek(key.data(), key.size(), &k, &v); ok; ok = cursor.next(&k, &v)) {
			HeapTid tid = decode_tid_key(k.mv_data, k.mv_size);
			uint32_t id = decode_tid_value(v);
			visited++;
			if (!fn(tid, id))
				break;
		}
		return visited;
	}

protected:
	static uint32_t decode_tid_value(const MDB_val &v);
	VectorRef block_slot(MDB_dbi dbi, std::vector<VectorRef> *cache, uint32_t per_block, uint32_t raw_bytes,
						 uint32_t dims, uint32_t id);

	IndexStore &store_;
	lmdb::Txn &txn_;
	const IndexMeta &geometry_;
	IndexStore::BlockCache *cache_ = nullptr;
	IndexStore::BlockCache local_cache_;
};

/// Typed writes inside a write transaction.
class StoreWriter : public StoreReader
{
public:
	StoreWriter(IndexStore &store, lmdb::Txn &txn);

	void put_meta(const IndexMeta &meta);
	/// Writes an item's stored vector into its block slot.
	void put_vector(uint32_t id, const void *bytes);
	void put_code(uint32_t id, const void *bytes);
	/// Writes the stored vectors (or codes) of items first_id .. first_id + count - 1, given
	/// back to back, rewriting each block once.
	void put_vectors(uint32_t first_id, uint32_t count, const uint8_t *bytes);
	void put_codes(uint32_t first_id, uint32_t count, const uint8_t *bytes);
	void put_item(uint32_t id, const ItemRecord &item);
	void delete_item(uint32_t id);
	void put_tid(HeapTid tid, uint32_t id);
	void delete_tid(HeapTid tid);
	/// Sets the neighbours of (id, layer) to the given ids (any order, no duplicates), and the
	/// in-links of every id added or removed, as the transaction commits.
	void put_links(uint32_t id, uint8_t layer, const uint32_t *ids, size_t n);
	/// Deletes the list of (id, layer) and its ids' in-links to it; false when there was none.
	bool delete_links_if_present(uint32_t id, uint8_t layer);
	/// The in-links of (id, layer) including this transaction's changes (see StoreReader).
	void in_links(uint32_t id, uint8_t layer, std::vector<uint32_t> &out);
	/// Bulk build only, into an empty file, keys in increasing order (MDB_APPEND): a list, or
	/// an in-links record, written as given; the build keeps the two consistent itself.
	void append_links(uint32_t id, uint8_t layer, const uint32_t *sorted_ids, size_t n);
	void append_in_links(uint32_t id, uint8_t layer, const uint32_t *sorted_ids, size_t n);
	void put_purged_since_walk(uint64_t purged);
	void put_tombstones(const Bitmap &tombstones);
	void put_centroid(const std::vector<float> &centroid);
	void put_hash(uint64_t hash, uint32_t id, unsigned flags = 0);
	void delete_hash(uint64_t hash, uint32_t id);

	class InLinkLog;

private:
	InLinkLog &in_link_log();
	void put_slots(MDB_dbi dbi, std::vector<VectorRef> &cache, uint32_t per_block, uint32_t raw_bytes,
				   uint32_t dims, bool floats, uint32_t first_id, uint32_t count, const uint8_t *bytes);
	std::vector<uint32_t> sort_buffer_, old_buffer_;
};

} // namespace hannoy
