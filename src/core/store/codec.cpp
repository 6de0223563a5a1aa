/*
 * codec.cpp: encoders and decoders of the on-disk layout described in codec.hpp.
 */
#include "codec.hpp"

#include <cstring>

#include "../error.hpp"

#include "../pure_cpp.hpp"

namespace hannoy
{

namespace
{

/* Little-endian writer/reader over a fixed buffer; bounds are checked by the callers. */
class LeWriter
{
public:
	explicit LeWriter(std::string &out) : out_(out) {}
	void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
	void u16(uint16_t v)
	{
		u8(static_cast<uint8_t>(v));
		u8(static_cast<uint8_t>(v >> 8));
	}
	void u32(uint32_t v)
	{
		u16(static_cast<uint16_t>(v));
		u16(static_cast<uint16_t>(v >> 16));
	}
	void u64(uint64_t v)
	{
		u32(static_cast<uint32_t>(v));
		u32(static_cast<uint32_t>(v >> 32));
	}
	void bytes(const uint8_t *p, size_t n) { out_.append(reinterpret_cast<const char *>(p), n); }

private:
	std::string &out_;
};

class LeReader
{
public:
	explicit LeReader(const uint8_t *p) : p_(p) {}
	uint8_t u8() { return *p_++; }
	uint16_t u16()
	{
		uint16_t lo = u8();
		return static_cast<uint16_t>(lo | (u8() << 8));
	}
	uint32_t u32()
	{
		uint32_t lo = u16();
		return lo | (static_cast<uint32_t>(u16()) << 16);
	}
	uint64_t u64()
	{
		uint64_t lo = u32();
		return lo | (static_cast<uint64_t>(u32()) << 32);
	}
	void bytes(uint8_t *out, size_t n)
	{
		std::memcpy(out, p_, n);
		p_ += n;
	}

private:
	const uint8_t *p_;
};

[[noreturn]] void
corrupted(const char *what)
{
	throw Error(ErrorCode::Corrupted, format("hannoy index file is corrupted: %s", what), "",
				"REINDEX the index.");
}

void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = static_cast<uint8_t>(v >> 24);
	p[1] = static_cast<uint8_t>(v >> 16);
	p[2] = static_cast<uint8_t>(v >> 8);
	p[3] = static_cast<uint8_t>(v);
}

uint32_t
get_be32(const uint8_t *p)
{
	return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
		   (static_cast<uint32_t>(p[2]) << 8) | p[3];
}

} // namespace

/*
 * Meta layout (128 bytes, little-endian):
 *   0 magic u32 | 4 format_version u16 | 6 flags u16 | 8 uuid[16] | 24 system_identifier u64
 *  32 index_oid u32 | 36 relfilenode u32 | 40 database_oid u32 | 44 tablespace_oid u32
 *  48 creator_xid u32 | 52 metric u8 | 53 quantization u8 | 54 m u16 | 56 ef_construction u16
 *  58 reserved u16 | 60 dims u32 | 64 vector_bytes u32 | 68 vectors_per_block u32
 *  72 code_bytes u32 | 76 codes_per_block u32 | 80 level_seed u64 | 88 next_item u32
 *  92 entry_point u32 | 96 max_level u8 | 97 reserved u8 | 98 reserved u16 | 100 max_norm f32
 * 104 live_items u64
 * 112 tombstoned_items u64 | 120 seq u64
 */
std::string
encode_meta(const IndexMeta &meta)
{
	std::string out;
	out.reserve(kMetaBytes);
	LeWriter w(out);
	w.u32(kMetaMagic);
	w.u16(meta.format_version);
	w.u16(meta.flags);
	w.bytes(meta.identity.uuid.data(), meta.identity.uuid.size());
	w.u64(meta.identity.system_identifier);
	w.u32(meta.identity.index_oid);
	w.u32(meta.identity.relfilenode);
	w.u32(meta.identity.database_oid);
	w.u32(meta.identity.tablespace_oid);
	w.u32(meta.identity.creator_xid);
	w.u8(static_cast<uint8_t>(meta.params.metric));
	w.u8(static_cast<uint8_t>(meta.params.quantization));
	w.u16(meta.params.m);
	w.u16(meta.params.ef_construction);
	w.u16(meta.timeline);
	w.u32(meta.params.dims);
	w.u32(meta.vector_bytes);
	w.u32(meta.vectors_per_block);
	w.u32(meta.code_bytes);
	w.u32(meta.codes_per_block);
	w.u64(meta.level_seed);
	w.u32(meta.next_item);
	w.u32(meta.entry_point);
	w.u8(meta.max_level);
	w.u8(0);
	w.u16(0);
	uint32_t norm_bits;
	std::memcpy(&norm_bits, &meta.max_norm, sizeof(norm_bits));
	w.u32(norm_bits);
	w.u64(meta.live_items);
	w.u64(meta.tombstoned_items);
	w.u64(meta.seq);
	return out;
}

IndexMeta
decode_meta(const void *data, size_t size)
{
	if (size < 8)
		corrupted("meta record too short");
	LeReader r(static_cast<const uint8_t *>(data));
	if (r.u32() != kMetaMagic)
		corrupted("bad meta magic");
	IndexMeta meta;
	meta.format_version = r.u16();
	if (meta.format_version != kFormatVersion)
		throw Error(ErrorCode::Unavailable,
					format("hannoy index file has format version %u, this build reads version %u",
						   meta.format_version, kFormatVersion),
					"", "REINDEX the index.");
	if (size != kMetaBytes)
		corrupted("meta record has the wrong size");
	meta.flags = r.u16();
	r.bytes(meta.identity.uuid.data(), meta.identity.uuid.size());
	meta.identity.system_identifier = r.u64();
	meta.identity.index_oid = r.u32();
	meta.identity.relfilenode = r.u32();
	meta.identity.database_oid = r.u32();
	meta.identity.tablespace_oid = r.u32();
	meta.identity.creator_xid = r.u32();
	if (!metric_from_u8(r.u8(), &meta.params.metric))
		corrupted("unknown metric");
	uint8_t quantization = r.u8();
	if (quantization > static_cast<uint8_t>(Quantization::Binary))
		corrupted("unknown quantization");
	meta.params.quantization = static_cast<Quantization>(quantization);
	meta.params.m = r.u16();
	meta.params.ef_construction = r.u16();
	meta.timeline = r.u16();
	meta.params.dims = r.u32();
	meta.vector_bytes = r.u32();
	meta.vectors_per_block = r.u32();
	meta.code_bytes = r.u32();
	meta.codes_per_block = r.u32();
	meta.level_seed = r.u64();
	meta.next_item = r.u32();
	meta.entry_point = r.u32();
	meta.max_level = r.u8();
	r.u8();
	r.u16();
	uint32_t norm_bits = r.u32();
	std::memcpy(&meta.max_norm, &norm_bits, sizeof(norm_bits));
	meta.live_items = r.u64();
	meta.tombstoned_items = r.u64();
	meta.seq = r.u64();

	/* dims == 0: an index built on an empty table; its first vector will fix the dimension. */
	bool unsized = meta.params.dims == 0;
	if (meta.params.m < 2 || meta.max_level > kMaxLevel ||
		(unsized && (meta.next_item != 0 || meta.vector_bytes != 0 || meta.vectors_per_block != 0)) ||
		(!unsized && (meta.vector_bytes != vector_bytes(meta.params.metric, meta.params.dims) ||
					  meta.vectors_per_block == 0)))
		corrupted("inconsistent meta record");
	if (meta.params.quantization == Quantization::Binary && !unsized &&
		(meta.code_bytes != binary_code_bytes(meta.params.dims) || meta.codes_per_block == 0))
		corrupted("inconsistent quantization in meta record");
	if (meta.entry_point != kNoItem && meta.entry_point >= meta.next_item)
		corrupted("entry point beyond the last item");
	return meta;
}

/*
 * Item layout: level u8 | flags u8 | tid count u16 | per TID: block u32, offset u16.
 */
std::string
encode_item(const ItemRecord &item)
{
	std::string out;
	out.reserve(4 + 6 * item.tids.size());
	LeWriter w(out);
	w.u8(item.level);
	w.u8(item.flags);
	w.u16(static_cast<uint16_t>(item.tids.size()));
	for (const HeapTid &tid : item.tids) {
		w.u32(tid.block);
		w.u16(tid.offset);
	}
	return out;
}

ItemRecord
decode_item(const void *data, size_t size)
{
	if (size < 4)
		corrupted("item record too short");
	LeReader r(static_cast<const uint8_t *>(data));
	ItemRecord item;
	item.level = r.u8();
	item.flags = r.u8();
	uint16_t count = r.u16();
	if (size != 4 + 6 * static_cast<size_t>(count) || item.level > kMaxLevel)
		corrupted("item record has the wrong size");
	item.tids.resize(count);
	for (HeapTid &tid : item.tids) {
		tid.block = r.u32();
		tid.offset = r.u16();
	}
	return item;
}

std::array<uint8_t, 4>
item_key(uint32_t id)
{
	std::array<uint8_t, 4> key;
	put_be32(key.data(), id);
	return key;
}

std::array<uint8_t, 5>
link_key(uint32_t id, uint8_t layer)
{
	std::array<uint8_t, 5> key;
	put_be32(key.data(), id);
	key[4] = layer;
	return key;
}

std::array<uint8_t, 6>
tid_key(HeapTid tid)
{
	std::array<uint8_t, 6> key;
	put_be32(key.data(), tid.block);
	key[4] = static_cast<uint8_t>(tid.offset >> 8);
	key[5] = static_cast<uint8_t>(tid.offset);
	return key;
}

std::array<uint8_t, 4>
block_key(uint32_t block)
{
	return item_key(block);
}

std::array<uint8_t, 12>
hash_key(uint64_t hash, uint32_t id)
{
	std::array<uint8_t, 12> key;
	put_be32(key.data(), static_cast<uint32_t>(hash >> 32));
	put_be32(key.data() + 4, static_cast<uint32_t>(hash));
	put_be32(key.data() + 8, id);
	return key;
}

void
decode_hash_key(const void *data, size_t size, uint64_t *hash, uint32_t *id)
{
	if (size != 12)
		corrupted("hashes key has the wrong size");
	const uint8_t *p = static_cast<const uint8_t *>(data);
	*hash = (static_cast<uint64_t>(get_be32(p)) << 32) | get_be32(p + 4);
	*id = get_be32(p + 8);
}

uint64_t
vector_hash(const uint8_t *bytes, size_t size)
{
	/* Eight bytes at a time through a multiply-xorshift mix; the length is mixed in too. */
	uint64_t h = 0x9e3779b97f4a7c15ull ^ size;
	size_t i = 0;
	for (; i + 8 <= size; i += 8) {
		uint64_t word;
		std::memcpy(&word, bytes + i, 8);
		h = (h ^ word) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	uint64_t tail = 0;
	std::memcpy(&tail, bytes + i, size - i);
	h = (h ^ tail) * 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 29;
	h *= 0x94d049bb133111ebull;
	return h ^ (h >> 31);
}

uint64_t
stored_vector_hash(VectorRef v, size_t raw_bytes, uint32_t dims)
{
	if (v.encoding == Encoding::Raw)
		return vector_hash(v.data, raw_bytes);
	std::vector<uint8_t> raw(raw_bytes);
	decode_vector(v, raw_bytes, dims, raw.data());
	return vector_hash(raw.data(), raw_bytes);
}

uint32_t
decode_item_key(const void *data, size_t size)
{
	if (size != 4)
		corrupted("item key has the wrong size");
	return get_be32(static_cast<const uint8_t *>(data));
}

HeapTid
decode_tid_key(const void *data, size_t size)
{
	if (size != 6)
		corrupted("tid key has the wrong size");
	const uint8_t *p = static_cast<const uint8_t *>(data);
	HeapTid tid;
	tid.block = get_be32(p);
	tid.offset = static_cast<uint16_t>((p[4] << 8) | p[5]);
	return tid;
}

void
decode_link_key(const void *data, size_t size, uint32_t *id, uint8_t *layer)
{
	if (size != 5)
		corrupted("links key has the wrong size");
	const uint8_t *p = static_cast<const uint8_t *>(data);
	*id = get_be32(p);
	*layer = p[4];
}

BlockGeometry
choose_block_geometry(uint32_t item_bytes, uint32_t page_size)
{
	/* An overflow record of P pages holds P * page_size - 16 bytes (page header), less the
	 * block header. Pick the P (up to 64 pages) that wastes the least space per item. */
	constexpr size_t kPageHeader = 16;
	constexpr size_t kMaxPages = 64;
	BlockGeometry best;
	best.bytes = item_bytes;
	double best_pages_per_item = 0;
	for (size_t pages = 1; pages <= kMaxPages; pages++) {
		size_t capacity = pages * page_size - kPageHeader - kBlockHeaderBytes;
		size_t per_block = capacity / item_bytes;
		if (per_block == 0)
			continue;
		double pages_per_item = static_cast<double>(pages) / static_cast<double>(per_block);
		if (best.per_block == 0 || pages_per_item < best_pages_per_item - 1e-12) {
			best.per_block = static_cast<uint32_t>(per_block);
			best_pages_per_item = pages_per_item;
		}
	}
	if (best.per_block == 0)
		best.per_block = 1; /* larger than 64 pages: one item per record */
	return best;
}

void
encode_vector_block(const uint8_t *raw_slots, uint32_t per_block, uint32_t raw_bytes, uint32_t dims,
					bool floats, size_t min_encoded_bytes, std::vector<uint8_t> &record)
{
	const size_t raw_total = static_cast<size_t>(per_block) * raw_bytes;
	const size_t elements = static_cast<size_t>(per_block) * dims;
	const bool bytes = floats && kBlockHeaderBytes + elements >= min_encoded_bytes &&
					   fits_u8(reinterpret_cast<const float *>(raw_slots), elements);
	record.assign(kBlockHeaderBytes, 0);
	if (bytes) {
		record[0] = static_cast<uint8_t>(Encoding::U8);
		record.resize(kBlockHeaderBytes + elements);
		encode_u8(reinterpret_cast<const float *>(raw_slots), elements, record.data() + kBlockHeaderBytes);
	} else {
		record.insert(record.end(), raw_slots, raw_slots + raw_total);
	}
}

Encoding
block_encoding(size_t size, uint32_t per_block, uint32_t raw_bytes, uint32_t dims, const std::string &path,
			   uint32_t block)
{
	const size_t raw = kBlockHeaderBytes + static_cast<size_t>(per_block) * raw_bytes;
	const size_t bytes = kBlockHeaderBytes + static_cast<size_t>(per_block) * dims;
	if (size == raw)
		return Encoding::Raw;
	if (size == bytes)
		return Encoding::U8;
	throw Error(ErrorCode::Corrupted,
				format("hannoy index file \"%s\": vector block %u has %zu bytes, expected %zu or %zu",
					   path.c_str(), block, size, raw, bytes),
				"", "REINDEX the index.");
}

Encoding
decode_block_header(const void *record, size_t size, uint32_t per_block, uint32_t raw_bytes, uint32_t dims,
					const std::string &path, uint32_t block)
{
	Encoding encoding = block_encoding(size, per_block, raw_bytes, dims, path, block);
	const uint8_t *p = static_cast<const uint8_t *>(record);
	if (p[0] != static_cast<uint8_t>(encoding))
		throw Error(ErrorCode::Corrupted,
					format("hannoy index file \"%s\": vector block %u of %zu bytes says encoding %u",
						   path.c_str(), block, size, static_cast<unsigned>(p[0])),
					"", "REINDEX the index.");
	return encoding;
}

std::string
encode_id_gaps(const uint32_t *sorted_ids, size_t n)
{
	std::string out;
	out.reserve(n * 3);
	uint32_t previous = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t gap = sorted_ids[i] - previous;
		previous = sorted_ids[i];
		do {
			uint8_t byte = gap & 0x7f;
			gap >>= 7;
			out.push_back(static_cast<char>(gap != 0 ? byte | 0x80 : byte));
		} while (gap != 0);
	}
	return out;
}

void
decode_id_gaps(const void *data, size_t size, std::vector<uint32_t> &out, const char *what)
{
	const uint8_t *p = static_cast<const uint8_t *>(data);
	const uint8_t *end = p + size;
	uint64_t previous = 0;
	bool first = true;
	while (p < end) {
		uint64_t gap = 0;
		int shift = 0;
		for (;;) {
			if (p == end || shift > 28)
				throw Error(ErrorCode::Corrupted,
							format("hannoy index file is corrupted: %s record is malformed", what), "",
							"REINDEX the index.");
			uint8_t byte = *p++;
			gap |= static_cast<uint64_t>(byte & 0x7f) << shift;
			shift += 7;
			if ((byte & 0x80) == 0)
				break;
		}
		uint64_t id = previous + gap;
		if ((!first && gap == 0) || id > 0xffffffffu)
			throw Error(ErrorCode::Corrupted,
						format("hannoy index file is corrupted: %s record has ids out of order", what), "",
						"REINDEX the index.");
		out.push_back(static_cast<uint32_t>(id));
		previous = id;
		first = false;
	}
}

} // namespace hannoy
