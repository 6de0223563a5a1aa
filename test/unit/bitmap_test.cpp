/*
 * bitmap_test.cpp: the portable roaring encoder matches CRoaring byte for byte, the decoder
 * agrees with CRoaring on every container kind, and damaged blobs are rejected, never
 * crashing the reader.
 */
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "core/error.hpp"
#include "core/store/bitmap.hpp"

namespace hannoy
{
namespace
{

std::vector<uint32_t>
random_ids(std::mt19937 &rng, size_t n, uint32_t max_id)
{
	std::uniform_int_distribution<uint32_t> pick(0, max_id);
	std::set<uint32_t> ids;
	while (ids.size() < n)
		ids.insert(pick(rng));
	return std::vector<uint32_t>(ids.begin(), ids.end());
}

TEST(Bitmap, EncoderMatchesCRoaring)
{
	std::mt19937 rng(1);
	for (int round = 0; round < 300; round++) {
		size_t n = round % 50;
		uint32_t max_id = round % 3 == 0 ? 1000 : (round % 3 == 1 ? 200000 : 0xfffffffeu);
		std::vector<uint32_t> ids = random_ids(rng, n, max_id);
		std::string mine = encode_portable_ids(ids.data(), ids.size());
		std::string theirs = Bitmap::of(ids.data(), ids.size()).encode();
		ASSERT_EQ(mine, theirs) << "round " << round;
	}
	/* A dense container (more than 4096 values) becomes a bitset. */
	std::vector<uint32_t> dense;
	for (uint32_t i = 0; i < 10000; i++)
		dense.push_back(70000 + i * 3);
	EXPECT_EQ(encode_portable_ids(dense.data(), dense.size()),
			  Bitmap::of(dense.data(), dense.size()).encode());
}

TEST(Bitmap, DecoderAgreesOnEveryContainerKind)
{
	std::mt19937 rng(2);
	for (int round = 0; round < 200; round++) {
		std::vector<uint32_t> ids =
			random_ids(rng, static_cast<size_t>(rng() % 6000), round % 2 ? 300000 : 70000);
		/* Runs: add a few consecutive ranges. */
		for (uint32_t r = 0; r < static_cast<uint32_t>(round % 5); r++)
			for (uint32_t v = 0; v < 100; v++)
				ids.push_back(r * 131072 + 500 + v);
		std::sort(ids.begin(), ids.end());
		ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
		roaring_bitmap_t *b = roaring_bitmap_of_ptr(ids.size(), ids.data());
		if (round % 2 == 0)
			roaring_bitmap_run_optimize(b);
		std::string bytes(roaring_bitmap_portable_size_in_bytes(b), '\0');
		roaring_bitmap_portable_serialize(b, bytes.data());
		roaring_bitmap_free(b);

		std::vector<uint32_t> decoded;
		decode_portable_ids(bytes.data(), bytes.size(), decoded, "test");
		ASSERT_EQ(decoded, ids) << "round " << round;
		Bitmap back = Bitmap::decode(bytes.data(), bytes.size());
		ASSERT_EQ(back.to_vector(), ids);
	}
}

TEST(Bitmap, EmptyBitmap)
{
	std::string bytes = encode_portable_ids(nullptr, 0);
	std::vector<uint32_t> out;
	decode_portable_ids(bytes.data(), bytes.size(), out, "test");
	EXPECT_TRUE(out.empty());
	EXPECT_EQ(bytes, Bitmap().encode());
}

TEST(Bitmap, DamagedBlobsAreRejectedNotTrusted)
{
	std::mt19937 rng(3);
	std::vector<uint32_t> ids = random_ids(rng, 40, 500000);
	std::string good = encode_portable_ids(ids.data(), ids.size());
	size_t rejected = 0;
	for (int round = 0; round < 20000; round++) {
		std::string bad = good;
		int edits = 1 + static_cast<int>(rng() % 4);
		for (int e = 0; e < edits; e++)
			bad[rng() % bad.size()] = static_cast<char>(rng());
		if (rng() % 4 == 0)
			bad.resize(rng() % bad.size());
		std::vector<uint32_t> out;
		try {
			decode_portable_ids(bad.data(), bad.size(), out, "test");
			/* Accepted: must then be a well-formed set. */
			for (size_t i = 1; i < out.size(); i++)
				ASSERT_LT(out[i - 1], out[i]);
			Bitmap b = Bitmap::decode(bad.data(), bad.size());
			ASSERT_EQ(b.to_vector(), out);
		} catch (const Error &e) {
			EXPECT_EQ(e.code(), ErrorCode::Corrupted);
			rejected++;
		}
	}
	EXPECT_GT(rejected, 10000u);
}

TEST(Bitmap, SetOperations)
{
	uint32_t a_ids[] = {1, 5, 9, 100000};
	uint32_t b_ids[] = {5, 7};
	Bitmap a = Bitmap::of(a_ids, 4);
	Bitmap b = Bitmap::of(b_ids, 2);
	EXPECT_TRUE(a.intersects(b));
	Bitmap c = a;
	c.subtract(b);
	EXPECT_EQ(c.to_vector(), (std::vector<uint32_t>{1, 9, 100000}));
	c.union_with(b);
	EXPECT_EQ(c.cardinality(), 5u);
	EXPECT_TRUE(c.contains(7));
	c.remove(7);
	EXPECT_FALSE(c.contains(7));
}

} // namespace
} // namespace hannoy
