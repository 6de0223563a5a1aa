/*
 * codec_test.cpp: byte-exact on-disk encodings (meta, items, keys) and block geometry.
 * A change here is a file-format change: bump kFormatVersion and update the golden bytes.
 */
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.hpp"
#include "core/store/codec.hpp"

namespace hannoy
{
namespace
{

std::string
hex(const std::string &bytes)
{
	static const char digits[] = "0123456789abcdef";
	std::string out;
	for (unsigned char c : bytes) {
		out.push_back(digits[c >> 4]);
		out.push_back(digits[c & 15]);
	}
	return out;
}

IndexMeta
sample_meta()
{
	IndexMeta meta;
	for (int i = 0; i < 16; i++)
		meta.identity.uuid[i] = static_cast<uint8_t>(i + 1);
	meta.identity.system_identifier = 0x0102030405060708ull;
	meta.identity.index_oid = 16384;
	meta.identity.relfilenode = 16390;
	meta.identity.database_oid = 5;
	meta.identity.tablespace_oid = 1663;
	meta.identity.creator_xid = 731;
	meta.params.metric = Metric::Cosine;
	meta.params.quantization = Quantization::None;
	meta.params.dims = 784;
	meta.params.m = 16;
	meta.params.ef_construction = 64;
	meta.vector_bytes = 3136;
	meta.vectors_per_block = 13;
	meta.level_seed = 0xdeadbeefcafef00dull;
	meta.next_item = 60000;
	meta.entry_point = 42;
	meta.max_level = 4;
	meta.max_norm = 2.5f;
	meta.live_items = 59990;
	meta.tombstoned_items = 10;
	meta.seq = 7;
	return meta;
}

TEST(Codec, MetaGoldenBytes)
{
	std::string bytes = encode_meta(sample_meta());
	ASSERT_EQ(bytes.size(), kMetaBytes);
	EXPECT_EQ(hex(bytes), "484e4e5903000000"                 /* magic, version 3, flags 0 */
						  "0102030405060708090a0b0c0d0e0f10" /* uuid */
						  "0807060504030201"                 /* system identifier */
						  "0040000006400000050000007f060000" /* index oid, relfilenode, db, tablespace */
						  "db020000"                         /* creator xid */
						  "0200"
						  "1000"
						  "4000"
						  "0000" /* cosine, no quantization, m, efc, reserved */
						  "10030000"
						  "400c0000"
						  "0d000000" /* dims, vector bytes, per block */
						  "00000000"
						  "00000000"         /* code bytes, codes per block */
						  "0df0fecaefbeadde" /* level seed */
						  "60ea0000"
						  "2a000000"
						  "04" /* next item, entry point, max level */
						  "000000"
						  "00002040" /* reserved, max norm 2.5f */
						  "56ea000000000000"
						  "0a00000000000000"
						  "0700000000000000");
}

TEST(Codec, MetaRoundTrip)
{
	IndexMeta meta = sample_meta();
	IndexMeta back = decode_meta(encode_meta(meta).data(), kMetaBytes);
	EXPECT_EQ(back.identity.uuid, meta.identity.uuid);
	EXPECT_EQ(back.identity.system_identifier, meta.identity.system_identifier);
	EXPECT_EQ(back.identity.creator_xid, 731u);
	EXPECT_EQ(back.params.metric, Metric::Cosine);
	EXPECT_EQ(back.params.dims, 784u);
	EXPECT_EQ(back.vectors_per_block, 13u);
	EXPECT_EQ(back.level_seed, meta.level_seed);
	EXPECT_EQ(back.entry_point, 42u);
	EXPECT_EQ(back.max_level, 4);
	EXPECT_EQ(back.max_norm, 2.5f);
	EXPECT_EQ(back.live_items, 59990u);
	EXPECT_EQ(back.seq, 7u);
}

TEST(Codec, MetaRejectsDamage)
{
	std::string bytes = encode_meta(sample_meta());
	std::string bad_magic = bytes;
	bad_magic[0] = 'X';
	EXPECT_THROW(decode_meta(bad_magic.data(), bad_magic.size()), Error);
	EXPECT_THROW(decode_meta(bytes.data(), bytes.size() - 1), Error);
	std::string future = bytes;
	future[4] = 9;
	try {
		decode_meta(future.data(), future.size());
		FAIL() << "unknown version accepted";
	} catch (const Error &e) {
		EXPECT_EQ(e.code(), ErrorCode::Unavailable);
		EXPECT_NE(std::string(e.what()).find("format version 9"), std::string::npos);
	}
	std::string bad_metric = bytes;
	bad_metric[52] = 77;
	EXPECT_THROW(decode_meta(bad_metric.data(), bad_metric.size()), Error);
	std::string bad_dims = bytes;
	bad_dims[60] = 0x11; /* dims no longer match vector_bytes */
	EXPECT_THROW(decode_meta(bad_dims.data(), bad_dims.size()), Error);
}

TEST(Codec, ItemGoldenBytes)
{
	ItemRecord item;
	item.level = 2;
	item.flags = 0;
	item.tids = {HeapTid{0x01020304, 0x0506}, HeapTid{7, 8}};
	std::string bytes = encode_item(item);
	EXPECT_EQ(hex(bytes), "0200"
						  "0200"
						  "04030201"
						  "0605"
						  "07000000"
						  "0800");
	ItemRecord back = decode_item(bytes.data(), bytes.size());
	EXPECT_EQ(back.level, 2);
	ASSERT_EQ(back.tids.size(), 2u);
	EXPECT_TRUE(back.tids[0] == (HeapTid{0x01020304, 0x0506}));
	EXPECT_THROW(decode_item(bytes.data(), bytes.size() - 1), Error);
}

TEST(Codec, IdGapsGoldenBytes)
{
	/* 5; gap 123 (one byte); gap 300 (0xac 0x02); gap 4294966868 to the largest id (five bytes). */
	const uint32_t ids[] = {5, 128, 428, 0xffffffffu};
	std::string bytes = encode_id_gaps(ids, 4);
	EXPECT_EQ(hex(bytes), "05"
						  "7b"
						  "ac02"
						  "d3fcffff0f");
	std::vector<uint32_t> out{77};
	decode_id_gaps(bytes.data(), bytes.size(), out, "test");
	EXPECT_EQ(out, (std::vector<uint32_t>{77, 5, 128, 428, 0xffffffffu}));
	out.clear();
	decode_id_gaps(nullptr, 0, out, "test");
	EXPECT_TRUE(out.empty());
	/* Id 0 first is a zero gap, allowed once. */
	const uint32_t zero[] = {0, 1};
	bytes = encode_id_gaps(zero, 2);
	EXPECT_EQ(hex(bytes), "0001");
}

TEST(Codec, IdGapsRejectDamage)
{
	auto rejects = [](const std::string &bytes) {
		std::vector<uint32_t> out;
		try {
			decode_id_gaps(bytes.data(), bytes.size(), out, "in-links");
		} catch (const Error &e) {
			return e.code() == ErrorCode::Corrupted &&
				   std::string(e.what()).find("in-links") != std::string::npos;
		}
		return false;
	};
	EXPECT_TRUE(rejects(std::string("\x85", 1)));                     /* truncated varint */
	EXPECT_TRUE(rejects(std::string("\x05\x00", 2)));                 /* repeated id */
	EXPECT_TRUE(rejects(std::string("\xff\xff\xff\xff\x7f", 5)));     /* beyond 32 bits */
	EXPECT_TRUE(rejects(std::string("\x80\x80\x80\x80\x80\x01", 6))); /* too long */
	EXPECT_TRUE(rejects(std::string("\xff\xff\xff\xff\x0f\x01", 6))); /* past the largest id */
}

TEST(Codec, KeysSortNumerically)
{
	auto a = item_key(255), b = item_key(256);
	EXPECT_LT(std::string(a.begin(), a.end()), std::string(b.begin(), b.end()));
	auto l = link_key(0x01020304, 3);
	EXPECT_EQ(hex(std::string(l.begin(), l.end())), "0102030403");
	auto t = tid_key(HeapTid{1, 0x0203});
	EXPECT_EQ(hex(std::string(t.begin(), t.end())), "000000010203");
	HeapTid back = decode_tid_key(t.data(), t.size());
	EXPECT_EQ(back.block, 1u);
	EXPECT_EQ(back.offset, 0x0203);
	uint32_t id;
	uint8_t layer;
	decode_link_key(l.data(), l.size(), &id, &layer);
	EXPECT_EQ(id, 0x01020304u);
	EXPECT_EQ(layer, 3);
}

TEST(Codec, VectorBlockGoldenBytes)
{
	/* Two slots of three floats, all small integers: a U8 block, one byte per element. */
	const float bytes_fit[] = {1.0f, 2.0f, 3.0f, 0.0f, 255.0f, 7.0f};
	std::vector<uint8_t> record;
	encode_vector_block(reinterpret_cast<const uint8_t *>(bytes_fit), 2, 12, 3, true, 0, record);
	EXPECT_EQ(hex(std::string(record.begin(), record.end())), "01" + std::string(94, '0') +
																  "010203"
																  "00ff07");
	EXPECT_EQ(decode_block_header(record.data(), record.size(), 2, 12, 3, "f", 0), Encoding::U8);

	/* One element that is no byte (2.5, 256, -1, -0) keeps the whole block raw. */
	for (float odd : {2.5f, 256.0f, -1.0f, -0.0f}) {
		float v[] = {1.0f, 2.0f, 3.0f, 0.0f, odd, 7.0f};
		encode_vector_block(reinterpret_cast<const uint8_t *>(v), 2, 12, 3, true, 0, record);
		ASSERT_EQ(record.size(), kBlockHeaderBytes + 24) << odd;
		EXPECT_EQ(record[0], 0) << odd;
		EXPECT_EQ(std::memcmp(record.data() + kBlockHeaderBytes, v, sizeof(v)), 0) << odd;
		EXPECT_EQ(decode_block_header(record.data(), record.size(), 2, 12, 3, "f", 0), Encoding::Raw);
	}
	/* A U8 record smaller than asked for (a page: see codec.hpp) stays raw. */
	encode_vector_block(reinterpret_cast<const uint8_t *>(bytes_fit), 2, 12, 3, true, 55, record);
	EXPECT_EQ(record[0], 0);
	encode_vector_block(reinterpret_cast<const uint8_t *>(bytes_fit), 2, 12, 3, true, 54, record);
	EXPECT_EQ(record[0], 1);
	/* Bit strings and codes are never re-encoded. */
	encode_vector_block(reinterpret_cast<const uint8_t *>(bytes_fit), 2, 12, 3, false, 0, record);
	EXPECT_EQ(record[0], 0);

	/* Readers tell the encoding by the size alone (no read of the header's page). */
	EXPECT_EQ(block_encoding(kBlockHeaderBytes + 6, 2, 12, 3, "f", 0), Encoding::U8);
	EXPECT_EQ(block_encoding(kBlockHeaderBytes + 24, 2, 12, 3, "f", 0), Encoding::Raw);
	EXPECT_THROW(block_encoding(kBlockHeaderBytes + 7, 2, 12, 3, "f", 0), Error);

	/* A damaged header or size is corruption, not a guess. */
	encode_vector_block(reinterpret_cast<const uint8_t *>(bytes_fit), 2, 12, 3, true, 0, record);
	EXPECT_THROW(decode_block_header(record.data(), record.size() - 1, 2, 12, 3, "f", 0), Error);
	record[0] = 9;
	EXPECT_THROW(decode_block_header(record.data(), record.size(), 2, 12, 3, "f", 0), Error);
}

TEST(Codec, BlockGeometryWastesLittle)
{
	/* 784 float dims: at most 3,150 bytes of pages per 3,136-byte vector. */
	BlockGeometry g = choose_block_geometry(3136, 4096);
	size_t g_pages = (g.block_bytes() + 16 + 4095) / 4096;
	EXPECT_LE(static_cast<double>(g_pages * 4096) / g.per_block, 3150.0);
	for (uint32_t bytes : {4u, 12u, 512u, 1000u, 2049u, 3072u * 4, 6144u, 16000u * 4}) {
		BlockGeometry geo = choose_block_geometry(bytes, 4096);
		ASSERT_GE(geo.per_block, 1u) << bytes;
		size_t pages = (geo.block_bytes() + 16 + 4095) / 4096;
		double per_item = static_cast<double>(pages * 4096) / geo.per_block;
		EXPECT_LE(per_item, bytes * 1.03 + 64) << bytes;
		/* Always an overflow record (so vectors are aligned): larger than half a page. */
		EXPECT_GT(geo.block_bytes(), 2040u) << bytes;
	}
}

} // namespace
} // namespace hannoy
