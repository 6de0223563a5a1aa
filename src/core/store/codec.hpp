/*
 * codec.hpp: the on-disk layout of a hannoy index file, byte for byte.
 *
 * Keys are big-endian so that LMDB's byte order is numeric order (items in id order, each
 * item's layers together, heap TIDs in physical order); values are little-endian, like the
 * portable roaring format of the links. Everything here is format: changing a constant or a
 * field breaks existing files, so each layout has a golden-bytes unit test and the file
 * carries kFormatVersion.
 *
 * Named databases of one index file:
 *   meta     "meta" -> IndexMeta;  "tombstones" -> portable bitmap of deleted items not yet purged;
 *            "centroid" -> dims floats (binary quantization: codes are signs relative to it)
 *   items    item id (u32 BE) -> ItemRecord (level, flags, heap TIDs)
 *   tids     heap TID (u32 BE block, u16 BE offset) -> item id (u32 LE)
 *   links    item id (u32 BE), layer (u8) -> portable roaring bitmap of neighbour ids
 *   inlinks  item id (u32 BE), layer (u8) -> the ids whose list on that layer holds the item,
 *            as id gaps (encode_id_gaps): exactly the reverse of `links` (absent when empty),
 *            so the lists pointing at a deleted item are found without reading every list
 *   vectors  block number (u32 BE) -> header (byte 0: the block's Encoding, the rest zero), then
 *            vectors_per_block stored vectors back to back, each in that encoding
 *   codes    block number (u32 BE) -> codes_per_block binary codes (binary quantization only)
 *   hashes   hash of a stored vector (u64 BE), item id (u32 BE) -> empty: finds an item with an
 *            identical vector, so identical rows share one graph node (an item lists several TIDs)
 */
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../distance/metric.hpp"

namespace hannoy
{

/// Version of the file layout described here. Readers refuse other versions.
constexpr uint16_t kFormatVersion = 3;
/// First four bytes of the meta record: "HNNY".
constexpr uint32_t kMetaMagic = 0x594e4e48;
/// Item id meaning "none" (no entry point).
constexpr uint32_t kNoItem = 0xffffffffu;
/// Highest layer an item may be assigned.
constexpr uint8_t kMaxLevel = 32;

/// Key of the meta database's record counting items purged since the last walk that made
/// every live item reachable (u64 LE; absent: none).
constexpr char kPurgedSinceWalkKey[] = "purged_since_walk";

/// Flags of IndexMeta.
enum MetaFlags : uint16_t {
	kMetaBuildComplete = 1 << 0, ///< the initial build finished and was synced
};

/// A heap row locator, opaque to the core (PostgreSQL's block number and line pointer).
struct HeapTid {
	uint32_t block = 0;
	uint16_t offset = 0;
	bool operator==(const HeapTid &o) const { return block == o.block && offset == o.offset; }
	bool operator<(const HeapTid &o) const { return block != o.block ? block < o.block : offset < o.offset; }
};

/// Build-time parameters, frozen in the file when the index is created.
struct IndexParams {
	Metric metric = Metric::L2;
	Quantization quantization = Quantization::None;
	uint32_t dims = 0;
	uint16_t m = 16;
	uint16_t ef_construction = 64;
};

/// Identity of the PostgreSQL index a file belongs to (opaque numbers to the core). The glue
/// compares it with the index's metapage before trusting the file.
struct Identity {
	std::array<uint8_t, 16> uuid{}; ///< random per build, also on the metapage
	uint64_t system_identifier = 0; ///< the cluster that built the file
	uint32_t index_oid = 0;
	uint32_t relfilenode = 0;
	uint32_t database_oid = 0;
	uint32_t tablespace_oid = 0;
	uint32_t creator_xid = 0; ///< transaction that created the file (orphan detection)
};

/// The meta record: everything needed to read the file.
struct IndexMeta {
	uint16_t format_version = kFormatVersion;
	uint16_t flags = 0;
	Identity identity;
	IndexParams params;
	uint32_t vector_bytes = 0;      ///< bytes of one stored vector
	uint32_t vectors_per_block = 0; ///< vectors per `vectors` record
	uint32_t code_bytes = 0;        ///< bytes of one binary code (0 without quantization)
	uint32_t codes_per_block = 0;
	uint64_t level_seed = 0; ///< seed of the per-item level draw
	uint32_t next_item = 0;  ///< next item id to assign; ids are never reused
	uint32_t entry_point = kNoItem;
	uint8_t max_level = 0;         ///< level of the entry point
	float max_norm = 0.0f;         ///< largest vector norm (inner product graphs are built with it)
	uint64_t live_items = 0;       ///< items with at least one heap TID
	uint64_t tombstoned_items = 0; ///< deleted items whose links may still exist
	uint64_t seq = 0;              ///< incremented by every committed change
	/// Low 16 bits of the host's timeline when the file was last written (0: not recorded).
	/// A file ahead of the host's own record of `seq` on another timeline was written by a
	/// history the host no longer has (point-in-time recovery, pg_rewind).
	uint16_t timeline = 0;
};

/// Size of the encoded IndexMeta.
constexpr size_t kMetaBytes = 128;

std::string encode_meta(const IndexMeta &meta);
/// Throws Corrupted for a wrong magic or size, Unavailable for an unknown format version.
IndexMeta decode_meta(const void *data, size_t size);

/// An item: its top layer and the heap rows holding its vector.
struct ItemRecord {
	uint8_t level = 0;
	uint8_t flags = 0;
	std::vector<HeapTid> tids;
};

std::string encode_item(const ItemRecord &item);
ItemRecord decode_item(const void *data, size_t size);

/// Big-endian key helpers.
std::array<uint8_t, 4> item_key(uint32_t id);
std::array<uint8_t, 5> link_key(uint32_t id, uint8_t layer);
std::array<uint8_t, 6> tid_key(HeapTid tid);
std::array<uint8_t, 4> block_key(uint32_t block);
std::array<uint8_t, 12> hash_key(uint64_t hash, uint32_t id);
uint32_t decode_item_key(const void *data, size_t size);
HeapTid decode_tid_key(const void *data, size_t size);
/// Splits a links key; throws Corrupted on a wrong size.
void decode_link_key(const void *data, size_t size, uint32_t *id, uint8_t *layer);
/// Splits a hashes key; throws Corrupted on a wrong size.
void decode_hash_key(const void *data, size_t size, uint64_t *hash, uint32_t *id);

/// Sorted, distinct ids as unsigned LEB128 varints of their gaps (the first id as is): about
/// 3 bytes per id for a few dozen ids spread over millions, where a roaring bitmap pays a
/// container header for nearly every one.
std::string encode_id_gaps(const uint32_t *sorted_ids, size_t n);
/// Appends the ids to `out`; throws Corrupted (naming `what`) on a truncated or malformed
/// record or ids that do not increase.
void decode_id_gaps(const void *data, size_t size, std::vector<uint32_t> &out, const char *what);

/// Hash of a stored vector's bytes (64 bits, well mixed; not cryptographic).
uint64_t vector_hash(const uint8_t *bytes, size_t size);
/// vector_hash() of a stored vector's raw form, whatever its encoding.
uint64_t stored_vector_hash(VectorRef v, size_t raw_bytes, uint32_t dims);

/// Most heap TIDs one item holds; identical rows beyond it get their own item.
constexpr size_t kMaxTidsPerItem = 256;

/// Bytes reserved at the start of every vector block. Overflow records start 16 bytes into
/// their first page, so after this header the vectors start on a 64-byte boundary, and
/// vectors whose size is a multiple of 64 bytes (most embedding sizes) all stay aligned.
constexpr size_t kBlockHeaderBytes = 48;

/// How stored vectors are packed into LMDB values: a header, then `per_block` vectors of
/// `bytes` each, sized so the record fills whole overflow pages with little waste. Records
/// are always written at full size, so they always live in overflow pages, page-aligned in
/// the map.
struct BlockGeometry {
	uint32_t bytes = 0;
	uint32_t per_block = 0;
	size_t block_bytes() const { return kBlockHeaderBytes + static_cast<size_t>(bytes) * per_block; }
};
BlockGeometry choose_block_geometry(uint32_t item_bytes, uint32_t page_size);

/// The record of a vector block whose `per_block` vectors are given in raw form, back to
/// back (`raw_bytes` bytes of `dims` elements each; `floats`: float elements). The block is
/// U8 when every element of every slot fits (unused slots are zeros and do) and the U8
/// record still takes at least `min_encoded_bytes` (pass the page size: a record of a page
/// or more lives in overflow pages, which later writes of other records never move, so
/// addresses into it stay valid for the whole write transaction); otherwise raw.
void encode_vector_block(const uint8_t *raw_slots, uint32_t per_block, uint32_t raw_bytes, uint32_t dims,
						 bool floats, size_t min_encoded_bytes, std::vector<uint8_t> &record);
/// The encoding of a vector block record of `size` bytes, told by its size alone: a raw and
/// a U8 record of the same geometry always differ in size (4 or 1 bytes per element), and
/// reading the header would cost a search that runs cold a disk read per block. Throws
/// Corrupted, naming `path` and the block, for any other size.
Encoding block_encoding(size_t size, uint32_t per_block, uint32_t raw_bytes, uint32_t dims,
						const std::string &path, uint32_t block);
/// block_encoding(), checked against the header's encoding byte (for writers, which read the
/// whole record anyway).
Encoding decode_block_header(const void *record, size_t size, uint32_t per_block, uint32_t raw_bytes,
							 uint32_t dims, const std::string &path, uint32_t block);

} // namespace hannoy
