/*
 * index_store.cpp: creating, opening and reading/writing one index file.
 */
#include "index_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "../pure_cpp.hpp"

namespace hannoy
{

namespace
{

constexpr unsigned kMaxDatabases = 9;
constexpr char kMetaKey[] = "meta";
constexpr char kTombstonesKey[] = "tombstones";
constexpr char kCentroidKey[] = "centroid";

std::string
lock_path(const std::string &path)
{
	return path + "-lock";
}

} // namespace

bool
IndexStore::remove_files(const std::string &path)
{
	bool removed = ::unlink(path.c_str()) == 0;
	if (::unlink(lock_path(path).c_str()) == 0)
		removed = true;
	return removed;
}

void
IndexStore::open_databases(bool create)
{
	lmdb::Txn txn(*env_, !create);
	unsigned flags = create ? MDB_CREATE : 0;
	struct {
		const char *name;
		MDB_dbi *dbi;
	} databases[] = {{"meta", &meta_},     {"items", &items_},     {"tids", &tids_},
					 {"links", &links_},   {"vectors", &vectors_}, {"codes", &codes_},
					 {"hashes", &hashes_}, {"inlinks", &inlinks_}};
	for (auto &db : databases) {
		int rc = mdb_dbi_open(txn.raw(), db.name, flags, db.dbi);
		if (rc == MDB_NOTFOUND)
			throw Error(
				ErrorCode::Corrupted,
				format("hannoy index file \"%s\" lacks its \"%s\" database", env_->path().c_str(), db.name),
				"", "REINDEX the index.");
		lmdb::check(rc, "mdb_dbi_open", env_->path());
	}
	/* Committing (even read-only) keeps the database handles open for later transactions. */
	txn.commit();
}

std::unique_ptr<IndexStore>
IndexStore::create(const std::string &path, const IndexMeta &initial, const Options &options)
{
	remove_files(path);
	lmdb::Env::Options env_options;
	env_options.create = true;
	env_options.no_sync = true;
	env_options.max_readers = options.max_readers;
	env_options.max_map_size = options.max_map_size;
	std::unique_ptr<IndexStore> store(new IndexStore(lmdb::Env::open(path, env_options, kMaxDatabases)));
	store->timeline_ = options.timeline;
	store->open_databases(true);

	IndexMeta meta = initial;
	meta.format_version = kFormatVersion;
	meta.flags = 0;
	store->set_dimensions(meta, meta.params.dims);
	lmdb::run_write(store->env(), [&](lmdb::Txn &txn) {
		StoreWriter writer(*store, txn);
		writer.put_meta(meta);
	});
	store->meta_cache_ = meta;
	return store;
}

std::unique_ptr<IndexStore>
IndexStore::open(const std::string &path, const Options &options)
{
	lmdb::Env::Options env_options;
	env_options.max_readers = options.max_readers;
	env_options.max_map_size = options.max_map_size;
	std::unique_ptr<IndexStore> store(new IndexStore(lmdb::Env::open(path, env_options, kMaxDatabases)));
	store->timeline_ = options.timeline;
	store->open_databases(false);
	lmdb::Txn txn(store->env(), true);
	MDB_val value;
	if (!txn.get(store->meta_, kMetaKey, sizeof(kMetaKey) - 1, &value))
		throw Error(ErrorCode::Corrupted, format("hannoy index file \"%s\" has no meta record", path.c_str()),
					"", "REINDEX the index.");
	store->meta_cache_ = decode_meta(value.mv_data, value.mv_size);
	/* The centroid is written once every row is loaded: the workers of a parallel build open
	 * the file before that, and traverse codes the leader has already written. */
	if (store->meta_cache_.params.quantization == Quantization::Binary &&
		store->meta_cache_.params.dims != 0 && (store->meta_cache_.flags & kMetaBuildComplete) != 0) {
		StoreReader reader(*store, txn);
		store->centroid_ = reader.centroid();
		if (store->centroid_.size() != store->meta_cache_.params.dims)
			throw Error(
				ErrorCode::Corrupted,
				format("hannoy index file \"%s\" lacks the centroid of its binary codes", path.c_str()), "",
				"REINDEX the index.");
	}
	return store;
}

void
IndexStore::set_dimensions(IndexMeta &meta, uint32_t dims) const
{
	meta.params.dims = dims;
	meta.vector_bytes = dims == 0 ? 0 : static_cast<uint32_t>(vector_bytes(meta.params.metric, dims));
	meta.vectors_per_block =
		dims == 0 ? 0 : choose_block_geometry(meta.vector_bytes, env_->page_size()).per_block;
	if (meta.params.quantization == Quantization::Binary && dims != 0) {
		meta.code_bytes = static_cast<uint32_t>(binary_code_bytes(dims));
		meta.codes_per_block = choose_block_geometry(meta.code_bytes, env_->page_size()).per_block;
	} else {
		meta.code_bytes = 0;
		meta.codes_per_block = 0;
	}
}

void
IndexStore::finish_build()
{
	lmdb::run_write(*env_, [&](lmdb::Txn &txn) {
		StoreWriter writer(*this, txn);
		IndexMeta meta = writer.meta();
		meta.flags |= kMetaBuildComplete;
		writer.put_meta(meta);
	});
	env_->sync();
	env_->set_no_sync(false);
	/* The file's directory entry must be durable too, or a crash could lose the file. */
	std::string dir = path();
	size_t slash = dir.rfind('/');
	dir = slash == std::string::npos ? "." : dir.substr(0, slash);
	int fd = ::open(dir.c_str(), O_RDONLY);
	if (fd >= 0) {
		::fsync(fd);
		::close(fd);
	}
}

StoreReader::StoreReader(IndexStore &store, lmdb::Txn &txn)
	: store_(store), txn_(txn), geometry_(store.cached_meta())
{
	if (txn.read_only() && store.env().live_txns == 1) {
		/* Same snapshot and same mapping: block addresses found earlier are still right. */
		IndexStore::BlockCache &cache = store.block_cache();
		if (cache.snapshot != txn.id() || cache.generation != store.map_generation()) {
			std::fill(cache.vectors.begin(), cache.vectors.end(), VectorRef());
			std::fill(cache.codes.begin(), cache.codes.end(), VectorRef());
			cache.links.invalidate(cache.generation != store.map_generation());
			cache.snapshot = txn.id();
			cache.generation = store.map_generation();
		}
		cache_ = &cache;
	} else if (!txn.read_only()) {
		/* A write transaction's own cache: writers keep it current when they rewrite a block
		 * (dirty pages stay put until commit, as batches stay far below LMDB's spill limit). */
		cache_ = &local_cache_;
	}
}

IndexMeta
StoreReader::meta() const
{
	MDB_val value;
	if (!txn_.get(store_.meta_dbi(), kMetaKey, sizeof(kMetaKey) - 1, &value))
		throw Error(ErrorCode::Corrupted, "hannoy index file has no meta record", "", "REINDEX the index.");
	return decode_meta(value.mv_data, value.mv_size);
}

VectorRef
StoreReader::block_slot(MDB_dbi dbi, std::vector<VectorRef> *cache, uint32_t per_block, uint32_t raw_bytes,
						uint32_t dims, uint32_t id)
{
	uint32_t block = id / per_block;
	uint32_t slot = id % per_block;
	VectorRef first;
	if (cache != nullptr && block < cache->size() && (*cache)[block]) {
		first = (*cache)[block];
	} else {
		auto key = block_key(block);
		MDB_val value;
		if (!txn_.get(dbi, key.data(), key.size(), &value))
			return VectorRef();
		first.encoding = block_encoding(value.mv_size, per_block, raw_bytes, dims, store_.path(), block);
		first.data = static_cast<const uint8_t *>(value.mv_data) + kBlockHeaderBytes;
		if (cache != nullptr) {
			if (block >= cache->size())
				cache->resize(static_cast<size_t>(block) + 1 + cache->size() / 2);
			(*cache)[block] = first;
		}
	}
	first.data += static_cast<size_t>(slot) * encoded_bytes(first.encoding, raw_bytes, dims);
	return first;
}

VectorRef
StoreReader::vector(uint32_t id)
{
	return block_slot(store_.vectors_dbi(), cache_ ? &cache_->vectors : nullptr, geometry_.vectors_per_block,
					  geometry_.vector_bytes, geometry_.params.dims, id);
}

const uint8_t *
StoreReader::code(uint32_t id)
{
	if (geometry_.codes_per_block == 0)
		return nullptr;
	return block_slot(store_.codes_dbi(), cache_ ? &cache_->codes : nullptr, geometry_.codes_per_block,
					  geometry_.code_bytes, geometry_.params.dims, id)
		.data;
}

void
IndexStore::LinkCache::invalidate(bool remapped)
{
	if (remapped)
		anchor_ = nullptr;
	if (++tag_ != 0)
		return;
	/* The tag wrapped: entries tagged long ago would look current again. */
	for (auto &chunk : chunks_)
		if (chunk != nullptr)
			std::fill(chunk.get(), chunk.get() + (size_t(1) << kChunkBits), uint64_t(0));
	tag_ = 1;
}

bool
IndexStore::LinkCache::find(uint32_t id, const uint8_t **data, size_t *size) const
{
	uint32_t chunk = id >> kChunkBits;
	if (chunk >= chunks_.size() || chunks_[chunk] == nullptr)
		return false;
	uint64_t entry = chunks_[chunk][id & ((uint32_t(1) << kChunkBits) - 1)];
	if (static_cast<uint8_t>(entry) != tag_)
		return false;
	/* arithmetic shift of the signed offset */
	int64_t offset = static_cast<int64_t>(entry) >> (kSizeBits + kTagBits);
	*data = anchor_ + offset;
	*size = static_cast<size_t>((entry >> kTagBits) & ((uint64_t(1) << kSizeBits) - 1));
	return true;
}

void
IndexStore::LinkCache::store(uint32_t id, const uint8_t *data, size_t size)
{
	if (id >= kMaxItems || size >= (size_t(1) << kSizeBits))
		return;
	if (anchor_ == nullptr)
		anchor_ = data;
	int64_t offset =
		static_cast<int64_t>(reinterpret_cast<uintptr_t>(data) - reinterpret_cast<uintptr_t>(anchor_));
	const int64_t limit = int64_t(1) << (kOffsetBits - 1);
	if (offset >= limit || offset < -limit)
		return;
	uint32_t chunk = id >> kChunkBits;
	if (chunk >= chunks_.size())
		chunks_.resize(chunk + 1);
	if (chunks_[chunk] == nullptr)
		chunks_[chunk].reset(new uint64_t[size_t(1) << kChunkBits]());
	chunks_[chunk][id & ((uint32_t(1) << kChunkBits) - 1)] =
		(static_cast<uint64_t>(offset) << (kSizeBits + kTagBits)) |
		(static_cast<uint64_t>(size) << kTagBits) | tag_;
}

bool
StoreReader::links(uint32_t id, uint8_t layer, std::vector<uint32_t> &out) const
{
	const bool cached = layer == 0 && cache_ != nullptr && cache_ != &local_cache_;
	if (cached) {
		const uint8_t *data;
		size_t size;
		if (cache_->links.find(id, &data, &size)) {
			decode_portable_ids(data, size, out, "links");
			return true;
		}
	}
	auto key = link_key(id, layer);
	MDB_val value;
	if (!txn_.get(store_.links_dbi(), key.data(), key.size(), &value))
		return false;
	if (cached)
		cache_->links.store(id, static_cast<const uint8_t *>(value.mv_data), value.mv_size);
	decode_portable_ids(value.mv_data, value.mv_size, out, "links");
	return true;
}

void
StoreReader::in_links(uint32_t id, uint8_t layer, std::vector<uint32_t> &out) const
{
	auto key = link_key(id, layer);
	MDB_val value;
	if (txn_.get(store_.inlinks_dbi(), key.data(), key.size(), &value))
		decode_id_gaps(value.mv_data, value.mv_size, out, "in-links");
}

uint64_t
StoreReader::purged_since_walk() const
{
	MDB_val value;
	if (!txn_.get(store_.meta_dbi(), kPurgedSinceWalkKey, sizeof(kPurgedSinceWalkKey) - 1, &value))
		return 0;
	if (value.mv_size != 8)
		throw Error(ErrorCode::Corrupted, "hannoy index file is corrupted: purge counter has the wrong size",
					"", "REINDEX the index.");
	uint64_t purged = 0;
	const uint8_t *p = static_cast<const uint8_t *>(value.mv_data);
	for (int i = 7; i >= 0; i--)
		purged = (purged << 8) | p[i];
	return purged;
}

bool
StoreReader::item(uint32_t id, ItemRecord *out) const
{
	auto key = item_key(id);
	MDB_val value;
	if (!txn_.get(store_.items_dbi(), key.data(), key.size(), &value))
		return false;
	*out = decode_item(value.mv_data, value.mv_size);
	return true;
}

bool
StoreReader::has_item(uint32_t id) const
{
	auto key = item_key(id);
	MDB_val value;
	return txn_.get(store_.items_dbi(), key.data(), key.size(), &value);
}

uint32_t
StoreReader::decode_tid_value(const MDB_val &v)
{
	if (v.mv_size != 4)
		throw Error(ErrorCode::Corrupted, "hannoy index file is corrupted: tid value has the wrong size", "",
					"REINDEX the index.");
	const uint8_t *p = static_cast<const uint8_t *>(v.mv_data);
	return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
		   (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

bool
StoreReader::item_for_tid(HeapTid tid, uint32_t *id) const
{
	auto key = tid_key(tid);
	MDB_val value;
	if (!txn_.get(store_.tids_dbi(), key.data(), key.size(), &value))
		return false;
	*id = decode_tid_value(value);
	return true;
}

Bitmap
StoreReader::tombstones() const
{
	MDB_val value;
	if (!txn_.get(store_.meta_dbi(), kTombstonesKey, sizeof(kTombstonesKey) - 1, &value))
		return Bitmap();
	return Bitmap::decode(value.mv_data, value.mv_size);
}

std::vector<float>
StoreReader::centroid() const
{
	MDB_val value;
	if (!txn_.get(store_.meta_dbi(), kCentroidKey, sizeof(kCentroidKey) - 1, &value))
		return {};
	if (value.mv_size % sizeof(float) != 0)
		throw Error(ErrorCode::Corrupted, "hannoy index file is corrupted: centroid has the wrong size", "",
					"REINDEX the index.");
	std::vector<float> centroid(value.mv_size / sizeof(float));
	std::memcpy(centroid.data(), value.mv_data, value.mv_size);
	return centroid;
}

uint32_t
StoreReader::find_identical(const uint8_t *vector, size_t max_tids, ItemRecord *item)
{
	const size_t bytes = geometry_.vector_bytes;
	const uint64_t hash = vector_hash(vector, bytes);
	auto key = hash_key(hash, 0);
	lmdb::Cursor cursor(txn_, store_.hashes_dbi());
	MDB_val k, v;
	for (bool ok = cursor.seek(key.data(), key.size(), &k, &v); ok; ok = cursor.next(&k, &v)) {
		uint64_t found_hash;
		uint32_t id;
		decode_hash_key(k.mv_data, k.mv_size, &found_hash, &id);
		if (found_hash != hash)
			break;
		VectorRef stored = this->vector(id);
		if (stored && same_vector(stored, VectorRef{vector, Encoding::Raw}, bytes, geometry_.params.dims) &&
			this->item(id, item) && item->tids.size() < max_tids)
			return id;
	}
	return kNoItem;
}

StoreWriter::StoreWriter(IndexStore &store, lmdb::Txn &txn) : StoreReader(store, txn)
{
	if (txn.read_only())
		throw Error(ErrorCode::Internal, "hannoy store writer needs a write transaction");
}

void
StoreWriter::put_meta(const IndexMeta &meta)
{
	IndexMeta stamped = meta;
	if (store_.timeline_ != 0)
		stamped.timeline = store_.timeline_;
	std::string bytes = encode_meta(stamped);
	txn_.put(store_.meta_dbi(), kMetaKey, sizeof(kMetaKey) - 1, bytes.data(), bytes.size());
	store_.set_cached_meta(stamped);
}

void
StoreWriter::put_slots(MDB_dbi dbi, std::vector<VectorRef> &cache, uint32_t per_block, uint32_t raw_bytes,
					   uint32_t dims, bool floats, uint32_t first_id, uint32_t count, const uint8_t *bytes)
{
	/* Each block is rebuilt in raw form, the new slots written in, and encoded afresh: a
	 * block of small integers stays U8 until a vector that does not fit joins it. */
	std::vector<uint8_t> raw, record;
	for (uint32_t id = first_id; id < first_id + count;) {
		uint32_t block = id / per_block;
		uint32_t end = std::min(first_id + count, (block + 1) * per_block);
		auto key = block_key(block);
		raw.assign(static_cast<size_t>(per_block) * raw_bytes, 0);
		MDB_val old;
		if (txn_.get(dbi, key.data(), key.size(), &old)) {
			/* Decoded first: reserving may move the record and free the pages `old` points into. */
			Encoding encoding = decode_block_header(old.mv_data, old.mv_size, per_block, raw_bytes, dims,
													store_.path(), block);
			const size_t slot_bytes = encoded_bytes(encoding, raw_bytes, dims);
			const uint8_t *slots = static_cast<const uint8_t *>(old.mv_data) + kBlockHeaderBytes;
			for (uint32_t slot = 0; slot < per_block; slot++)
				decode_vector(VectorRef{slots + slot * slot_bytes, encoding}, raw_bytes, dims,
							  raw.data() + static_cast<size_t>(slot) * raw_bytes);
		}
		std::memcpy(raw.data() + static_cast<size_t>(id % per_block) * raw_bytes,
					bytes + static_cast<size_t>(id - first_id) * raw_bytes,
					static_cast<size_t>(end - id) * raw_bytes);
		encode_vector_block(raw.data(), per_block, raw_bytes, dims, floats, store_.env().page_size(), record);
		uint8_t *dest = static_cast<uint8_t *>(txn_.reserve(dbi, key.data(), key.size(), record.size()));
		std::memcpy(dest, record.data(), record.size());
		if (block >= cache.size())
			cache.resize(static_cast<size_t>(block) + 1 + cache.size() / 2);
		cache[block] = VectorRef{dest + kBlockHeaderBytes, static_cast<Encoding>(record[0])};
		id = end;
	}
}

void
StoreWriter::put_vector(uint32_t id, const void *bytes)
{
	put_vectors(id, 1, static_cast<const uint8_t *>(bytes));
}

void
StoreWriter::put_code(uint32_t id, const void *bytes)
{
	put_codes(id, 1, static_cast<const uint8_t *>(bytes));
}

void
StoreWriter::put_vectors(uint32_t first_id, uint32_t count, const uint8_t *bytes)
{
	put_slots(store_.vectors_dbi(), cache_->vectors, geometry_.vectors_per_block, geometry_.vector_bytes,
			  geometry_.params.dims, metric_uses_floats(geometry_.params.metric), first_id, count, bytes);
}

void
StoreWriter::put_codes(uint32_t first_id, uint32_t count, const uint8_t *bytes)
{
	if (geometry_.codes_per_block == 0)
		throw Error(ErrorCode::Internal, "binary code written to an index without quantization");
	put_slots(store_.codes_dbi(), cache_->codes, geometry_.codes_per_block, geometry_.code_bytes,
			  geometry_.params.dims, false, first_id, count, bytes);
}

void
StoreWriter::put_item(uint32_t id, const ItemRecord &item)
{
	auto key = item_key(id);
	std::string bytes = encode_item(item);
	txn_.put(store_.items_dbi(), key.data(), key.size(), bytes.data(), bytes.size());
}

void
StoreWriter::delete_item(uint32_t id)
{
	auto key = item_key(id);
	txn_.del(store_.items_dbi(), key.data(), key.size());
}

void
StoreWriter::put_tid(HeapTid tid, uint32_t id)
{
	auto key = tid_key(tid);
	uint8_t value[4] = {static_cast<uint8_t>(id), static_cast<uint8_t>(id >> 8),
						static_cast<uint8_t>(id >> 16), static_cast<uint8_t>(id >> 24)};
	txn_.put(store_.tids_dbi(), key.data(), key.size(), value, sizeof(value));
}

void
StoreWriter::delete_tid(HeapTid tid)
{
	auto key = tid_key(tid);
	txn_.del(store_.tids_dbi(), key.data(), key.size());
}

/* The in-link changes of one write transaction, applied to the inlinks database when it
 * commits: an insert rewrites dozens of lists, and many of them point at the same items, so
 * each in-links record is rewritten once per transaction rather than once per edge. */
class StoreWriter::InLinkLog : public lmdb::CommitHook
{
public:
	InLinkLog(lmdb::Txn &txn, MDB_dbi dbi) : txn_(txn), dbi_(dbi) {}

	void add(uint32_t target, uint8_t layer, uint32_t source)
	{
		ops_[key(target, layer)].push_back(op(source, true));
	}
	void remove(uint32_t target, uint8_t layer, uint32_t source)
	{
		ops_[key(target, layer)].push_back(op(source, false));
	}

	/// The committed in-links of (id, layer) in `out` (sorted), with this transaction's changes.
	void apply(uint32_t id, uint8_t layer, std::vector<uint32_t> &out) const
	{
		auto it = ops_.find(key(id, layer));
		if (it != ops_.end())
			replay(it->second, out);
	}

	void before_commit() override
	{
		std::vector<uint64_t> keys;
		keys.reserve(ops_.size());
		for (const auto &entry : ops_)
			keys.push_back(entry.first);
		/* In key order: neighbouring records share B-tree pages. */
		std::sort(keys.begin(), keys.end());
		std::vector<uint32_t> ids;
		for (uint64_t k : keys) {
			uint32_t id = static_cast<uint32_t>(k >> 8);
			uint8_t layer = static_cast<uint8_t>(k & 0xff);
			auto record_key = link_key(id, layer);
			ids.clear();
			MDB_val value;
			if (txn_.get(dbi_, record_key.data(), record_key.size(), &value))
				decode_id_gaps(value.mv_data, value.mv_size, ids, "in-links");
			replay(ops_[k], ids);
			if (ids.empty()) {
				txn_.del(dbi_, record_key.data(), record_key.size());
				continue;
			}
			std::string bytes = encode_id_gaps(ids.data(), ids.size());
			txn_.put(dbi_, record_key.data(), record_key.size(), bytes.data(), bytes.size());
		}
	}

private:
	static uint64_t key(uint32_t id, uint8_t layer) { return (static_cast<uint64_t>(id) << 8) | layer; }
	static uint64_t op(uint32_t source, bool add)
	{
		return (static_cast<uint64_t>(source) << 1) | (add ? 1 : 0);
	}
	/* In order: a list may drop an item and take it back within one transaction. */
	static void replay(const std::vector<uint64_t> &ops, std::vector<uint32_t> &sorted)
	{
		for (uint64_t o : ops) {
			uint32_t source = static_cast<uint32_t>(o >> 1);
			auto at = std::lower_bound(sorted.begin(), sorted.end(), source);
			bool present = at != sorted.end() && *at == source;
			if ((o & 1) != 0 && !present)
				sorted.insert(at, source);
			else if ((o & 1) == 0 && present)
				sorted.erase(at);
		}
	}

	lmdb::Txn &txn_;
	MDB_dbi dbi_;
	std::unordered_map<uint64_t, std::vector<uint64_t>> ops_;
};

StoreWriter::InLinkLog &
StoreWriter::in_link_log()
{
	if (txn_.commit_hook() == nullptr)
		txn_.set_commit_hook(std::make_unique<InLinkLog>(txn_, store_.inlinks_dbi()));
	auto *log = dynamic_cast<InLinkLog *>(txn_.commit_hook());
	if (log == nullptr)
		throw Error(ErrorCode::Internal, "hannoy write transaction has a foreign commit hook");
	return *log;
}

void
StoreWriter::put_links(uint32_t id, uint8_t layer, const uint32_t *ids, size_t n)
{
	sort_buffer_.assign(ids, ids + n);
	std::sort(sort_buffer_.begin(), sort_buffer_.end());
	auto key = link_key(id, layer);
	old_buffer_.clear();
	MDB_val old;
	if (txn_.get(store_.links_dbi(), key.data(), key.size(), &old))
		decode_portable_ids(old.mv_data, old.mv_size, old_buffer_, "links");
	/* Both sorted: one merge finds what was added and what was removed. */
	InLinkLog &log = in_link_log();
	size_t i = 0, j = 0;
	while (i < old_buffer_.size() || j < sort_buffer_.size()) {
		if (j == sort_buffer_.size() || (i < old_buffer_.size() && old_buffer_[i] < sort_buffer_[j])) {
			log.remove(old_buffer_[i++], layer, id);
		} else if (i == old_buffer_.size() || sort_buffer_[j] < old_buffer_[i]) {
			log.add(sort_buffer_[j++], layer, id);
		} else {
			i++;
			j++;
		}
	}
	std::string bytes = encode_portable_ids(sort_buffer_.data(), sort_buffer_.size());
	txn_.put(store_.links_dbi(), key.data(), key.size(), bytes.data(), bytes.size());
}

void
StoreWriter::append_links(uint32_t id, uint8_t layer, const uint32_t *sorted_ids, size_t n)
{
	std::string bytes = encode_portable_ids(sorted_ids, n);
	auto key = link_key(id, layer);
	txn_.put(store_.links_dbi(), key.data(), key.size(), bytes.data(), bytes.size(), MDB_APPEND);
}

void
StoreWriter::append_in_links(uint32_t id, uint8_t layer, const uint32_t *sorted_ids, size_t n)
{
	std::string bytes = encode_id_gaps(sorted_ids, n);
	auto key = link_key(id, layer);
	txn_.put(store_.inlinks_dbi(), key.data(), key.size(), bytes.data(), bytes.size(), MDB_APPEND);
}

void
StoreWriter::in_links(uint32_t id, uint8_t layer, std::vector<uint32_t> &out)
{
	std::vector<uint32_t> ids;
	StoreReader::in_links(id, layer, ids);
	if (txn_.commit_hook() != nullptr)
		in_link_log().apply(id, layer, ids);
	out.insert(out.end(), ids.begin(), ids.end());
}

void
StoreWriter::put_purged_since_walk(uint64_t purged)
{
	if (purged == 0) {
		txn_.del(store_.meta_dbi(), kPurgedSinceWalkKey, sizeof(kPurgedSinceWalkKey) - 1);
		return;
	}
	uint8_t bytes[8];
	for (int i = 0; i < 8; i++)
		bytes[i] = static_cast<uint8_t>(purged >> (8 * i));
	txn_.put(store_.meta_dbi(), kPurgedSinceWalkKey, sizeof(kPurgedSinceWalkKey) - 1, bytes, sizeof(bytes));
}

void
StoreWriter::put_centroid(const std::vector<float> &centroid)
{
	txn_.put(store_.meta_dbi(), kCentroidKey, sizeof(kCentroidKey) - 1, centroid.data(),
			 centroid.size() * sizeof(float));
	store_.set_cached_centroid(centroid);
}

void
StoreWriter::put_hash(uint64_t hash, uint32_t id, unsigned flags)
{
	auto key = hash_key(hash, id);
	txn_.put(store_.hashes_dbi(), key.data(), key.size(), nullptr, 0, flags);
}

void
StoreWriter::delete_hash(uint64_t hash, uint32_t id)
{
	auto key = hash_key(hash, id);
	txn_.del(store_.hashes_dbi(), key.data(), key.size());
}

bool
StoreWriter::delete_links_if_present(uint32_t id, uint8_t layer)
{
	auto key = link_key(id, layer);
	MDB_val old;
	if (!txn_.get(store_.links_dbi(), key.data(), key.size(), &old))
		return false;
	old_buffer_.clear();
	decode_portable_ids(old.mv_data, old.mv_size, old_buffer_, "links");
	InLinkLog &log = in_link_log();
	for (uint32_t target : old_buffer_)
		log.remove(target, layer, id);
	return txn_.del(store_.links_dbi(), key.data(), key.size());
}

void
StoreWriter::put_tombstones(const Bitmap &tombstones)
{
	if (tombstones.empty()) {
		txn_.del(store_.meta_dbi(), kTombstonesKey, sizeof(kTombstonesKey) - 1);
		return;
	}
	std::string bytes = tombstones.encode();
	txn_.put(store_.meta_dbi(), kTombstonesKey, sizeof(kTombstonesKey) - 1, bytes.data(), bytes.size());
}

} // namespace hannoy
