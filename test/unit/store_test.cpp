/*
 * store_test.cpp: the index file: creation, typed reads and writes, map growth, reopening,
 * and refusal of files that are missing or not hannoy files.
 */
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "core/error.hpp"
#include "test_util.hpp"

namespace hannoy
{
namespace
{

IndexMeta
meta_for(Metric metric, uint32_t dims)
{
	IndexMeta meta;
	meta.params.metric = metric;
	meta.params.dims = dims;
	meta.params.m = 8;
	meta.params.ef_construction = 32;
	meta.level_seed = 12345;
	meta.identity.index_oid = 99;
	return meta;
}

TEST(Store, CreateWriteReadReopen)
{
	test::TempPath tmp;
	{
		auto store = IndexStore::create(tmp.path(), meta_for(Metric::L2, 3), IndexStore::Options());
		EXPECT_EQ(store->cached_meta().vector_bytes, 12u);
		EXPECT_GT(store->cached_meta().vectors_per_block, 100u);
		lmdb::run_write(store->env(), [&](lmdb::Txn &txn) {
			StoreWriter w(*store, txn);
			for (uint32_t id = 0; id < 1000; id++) {
				float v[3] = {static_cast<float>(id), 1.0f, -1.0f};
				w.put_vector(id, v);
				ItemRecord item;
				item.level = 1;
				item.tids.push_back(HeapTid{id / 10, static_cast<uint16_t>(id % 10 + 1)});
				w.put_item(id, item);
				w.put_tid(item.tids[0], id);
				uint32_t links[] = {(id + 1) % 1000, (id + 2) % 1000};
				w.put_links(id, 0, links, 2);
			}
			IndexMeta meta = w.meta();
			meta.next_item = 1000;
			meta.live_items = 1000;
			w.put_meta(meta);
		});
	}
	auto store = IndexStore::open(tmp.path(), IndexStore::Options());
	EXPECT_EQ(store->cached_meta().next_item, 1000u);
	EXPECT_EQ(store->cached_meta().identity.index_oid, 99u);
	lmdb::Txn txn(store->env(), true);
	StoreReader r(*store, txn);
	for (uint32_t id = 0; id < 1000; id += 37) {
		/* Raw floats (-1 does not fit a byte), aligned for the kernels. */
		VectorRef stored = r.vector(id);
		ASSERT_TRUE(stored);
		EXPECT_EQ(stored.encoding, Encoding::Raw);
		const float *v = reinterpret_cast<const float *>(stored.data);
		EXPECT_EQ(v[0], static_cast<float>(id));
		EXPECT_EQ(reinterpret_cast<uintptr_t>(v) % 4, 0u) << "vectors must be float-aligned";
		std::vector<uint32_t> links;
		ASSERT_TRUE(r.links(id, 0, links));
		EXPECT_EQ(links.size(), 2u);
		uint32_t mapped;
		ASSERT_TRUE(r.item_for_tid(HeapTid{id / 10, static_cast<uint16_t>(id % 10 + 1)}, &mapped));
		EXPECT_EQ(mapped, id);
	}
	std::vector<uint32_t> none;
	EXPECT_FALSE(r.links(5, 1, none));
	EXPECT_FALSE(r.vector(1000000));
	size_t count = r.for_each_tid(HeapTid{}, [](HeapTid, uint32_t) { return true; });
	EXPECT_EQ(count, 1000u);
}

TEST(Store, MapGrowsUnderLargeWrites)
{
	test::TempPath tmp;
	auto store = IndexStore::create(tmp.path(), meta_for(Metric::L2, 1024), IndexStore::Options());
	size_t initial_map = store->env().map_size();
	std::vector<float> v(1024, 0.5f);
	/* 40,000 vectors of 4 KiB: 160 MiB, more than the initial 64 MiB map. */
	for (uint32_t chunk = 0; chunk < 40; chunk++) {
		lmdb::run_write(store->env(), [&](lmdb::Txn &txn) {
			StoreWriter w(*store, txn);
			for (uint32_t i = 0; i < 1000; i++) {
				v[0] = static_cast<float>(chunk * 1000 + i);
				w.put_vector(chunk * 1000 + i, v.data());
			}
		});
	}
	EXPECT_GT(store->env().map_size(), initial_map);
	lmdb::Txn txn(store->env(), true);
	StoreReader r(*store, txn);
	EXPECT_EQ(test::stored_floats(r, 39999)[0], 39999.0f);
}

/* Reads remember where vector blocks and layer-0 lists lie for as long as the snapshot is
 * the same; a commit in between, or a map that grew and moved, must make them look again. */
TEST(Store, SnapshotCachesFollowWritesAndMapGrowth)
{
	test::TempPath tmp;
	auto store = IndexStore::create(tmp.path(), meta_for(Metric::L2, 256), IndexStore::Options());
	const uint32_t items = 2000;
	auto write_round = [&](uint32_t round, uint32_t first, uint32_t count) {
		lmdb::run_write(store->env(), [&](lmdb::Txn &txn) {
			StoreWriter w(*store, txn);
			std::vector<float> v(256, static_cast<float>(round));
			for (uint32_t id = first; id < first + count; id++) {
				v[0] = static_cast<float>(id);
				w.put_vector(id, v.data());
				if (id < items) {
					uint32_t links[] = {(id + round + 1) % items, (id + round + 2) % items};
					w.put_links(id, 0, links, 2);
				}
			}
		});
	};
	auto check_round = [&](uint32_t round) {
		/* twice: the second pass is served from the caches */
		for (int pass = 0; pass < 2; pass++) {
			lmdb::Txn txn(store->env(), true);
			StoreReader r(*store, txn);
			for (uint32_t id = 0; id < items; id += 7) {
				std::vector<float> v = test::stored_floats(r, id);
				ASSERT_FALSE(v.empty());
				ASSERT_EQ(v[0], static_cast<float>(id));
				ASSERT_EQ(v[1], static_cast<float>(round)) << "stale vector of item " << id;
				std::vector<uint32_t> links;
				ASSERT_TRUE(r.links(id, 0, links));
				std::vector<uint32_t> expected = {(id + round + 1) % items, (id + round + 2) % items};
				std::sort(expected.begin(), expected.end());
				ASSERT_EQ(links, expected) << "stale links of item " << id << " in round " << round;
			}
		}
	};
	write_round(0, 0, items);
	check_round(0);
	write_round(1, 0, items);
	check_round(1);
	/* Grow the map well past its first size (moving it, as LMDB may), then rewrite. */
	size_t before = store->env().map_size();
	for (uint32_t round = 2; store->env().map_size() < 4 * before; round++)
		write_round(round, items + (round - 2) * 20000, 20000);
	write_round(7, 0, items);
	check_round(7);
}

TEST(Store, VectorsAreCacheLineAligned)
{
	/* 784 floats = 3,136 bytes, a multiple of 64: every stored vector starts a cache line. */
	test::TempPath tmp;
	auto store = IndexStore::create(tmp.path(), meta_for(Metric::L2, 784), IndexStore::Options());
	std::vector<float> v(784, 1.5f);
	lmdb::run_write(store->env(), [&](lmdb::Txn &txn) {
		StoreWriter w(*store, txn);
		for (uint32_t id = 0; id < 200; id++)
			w.put_vector(id, v.data());
	});
	lmdb::Txn txn(store->env(), true);
	StoreReader r(*store, txn);
	for (uint32_t id = 0; id < 200; id++)
		EXPECT_EQ(reinterpret_cast<uintptr_t>(r.vector(id).data) % 64, 0u) << id;
}

TEST(Store, MissingAndForeignFiles)
{
	test::TempPath tmp;
	try {
		IndexStore::open(tmp.path(), IndexStore::Options());
		FAIL();
	} catch (const Error &e) {
		EXPECT_EQ(e.code(), ErrorCode::Unavailable);
	}
	{
		std::ofstream junk(tmp.path());
		junk << std::string(20000, 'x');
	}
	EXPECT_THROW(IndexStore::open(tmp.path(), IndexStore::Options()), Error);
}

TEST(Store, CreateReplacesExistingFile)
{
	test::TempPath tmp;
	{
		auto store = IndexStore::create(tmp.path(), meta_for(Metric::L2, 2), IndexStore::Options());
		lmdb::run_write(store->env(), [&](lmdb::Txn &txn) {
			StoreWriter w(*store, txn);
			float v[2] = {1, 2};
			w.put_vector(0, v);
		});
	}
	auto store = IndexStore::create(tmp.path(), meta_for(Metric::L2, 2), IndexStore::Options());
	lmdb::Txn txn(store->env(), true);
	StoreReader r(*store, txn);
	EXPECT_FALSE(r.vector(0));
}

TEST(Store, Tombstones)
{
	test::TempPath tmp;
	auto store = IndexStore::create(tmp.path(), meta_for(Metric::L2, 2), IndexStore::Options());
	lmdb::run_write(store->env(), [&](lmdb::Txn &txn) {
		StoreWriter w(*store, txn);
		EXPECT_TRUE(w.tombstones().empty());
		Bitmap t;
		t.add(3);
		t.add(70000);
		w.put_tombstones(t);
	});
	{
		lmdb::Txn txn(store->env(), true);
		StoreReader r(*store, txn);
		EXPECT_EQ(r.tombstones().to_vector(), (std::vector<uint32_t>{3, 70000}));
	}
	lmdb::run_write(store->env(), [&](lmdb::Txn &txn) {
		StoreWriter w(*store, txn);
		w.put_tombstones(Bitmap());
	});
	lmdb::Txn txn(store->env(), true);
	StoreReader r(*store, txn);
	EXPECT_TRUE(r.tombstones().empty());
}

TEST(Store, InLinksAreTheReverseOfTheLists)
{
	test::TempPath tmp;
	auto store = IndexStore::create(tmp.path(), meta_for(Metric::L2, 2), IndexStore::Options());
	auto in = [&](uint32_t id, uint8_t layer) {
		lmdb::Txn txn(store->env(), true);
		std::vector<uint32_t> out;
		StoreReader(*store, txn).in_links(id, layer, out);
		return out;
	};
	using Ids = std::vector<uint32_t>;
	lmdb::run_write(store->env(), [&](lmdb::Txn &txn) {
		StoreWriter w(*store, txn);
		uint32_t a[] = {7, 2, 5};
		w.put_links(1, 0, a, 3);
		uint32_t b[] = {5};
		w.put_links(3, 0, b, 1);
		w.put_links(3, 1, b, 1);
		/* The writer sees its own transaction's changes before they are written. */
		Ids seen;
		w.in_links(5, 0, seen);
		EXPECT_EQ(seen, (Ids{1, 3}));
		/* A list that drops an item and takes it back within the transaction. */
		uint32_t c[] = {2};
		w.put_links(1, 0, c, 1);
		w.put_links(1, 0, a, 3);
	});
	EXPECT_EQ(in(5, 0), (Ids{1, 3}));
	EXPECT_EQ(in(5, 1), (Ids{3}));
	EXPECT_EQ(in(2, 0), (Ids{1}));
	EXPECT_EQ(in(7, 0), (Ids{1}));
	EXPECT_EQ(in(1, 0), Ids{});

	/* Replacing a list moves its in-links; deleting it removes them and their empty records. */
	lmdb::run_write(store->env(), [&](lmdb::Txn &txn) {
		StoreWriter w(*store, txn);
		uint32_t a[] = {2, 9};
		w.put_links(1, 0, a, 2);
		EXPECT_TRUE(w.delete_links_if_present(3, 1));
		EXPECT_FALSE(w.delete_links_if_present(3, 2));
	});
	EXPECT_EQ(in(5, 0), (Ids{3}));
	EXPECT_EQ(in(7, 0), Ids{});
	EXPECT_EQ(in(9, 0), (Ids{1}));
	EXPECT_EQ(in(5, 1), Ids{});
	{
		lmdb::Txn txn(store->env(), true);
		MDB_val value;
		auto key = link_key(5, 1);
		EXPECT_FALSE(txn.get(store->inlinks_dbi(), key.data(), key.size(), &value));
	}

	/* An aborted transaction changes neither. */
	{
		lmdb::Txn txn(store->env(), false);
		StoreWriter w(*store, txn);
		uint32_t a[] = {4};
		w.put_links(1, 0, a, 1);
	}
	EXPECT_EQ(in(9, 0), (Ids{1}));
	EXPECT_EQ(in(4, 0), Ids{});
}

TEST(Store, PurgeCounter)
{
	test::TempPath tmp;
	auto store = IndexStore::create(tmp.path(), meta_for(Metric::L2, 2), IndexStore::Options());
	auto read = [&] {
		lmdb::Txn txn(store->env(), true);
		return StoreReader(*store, txn).purged_since_walk();
	};
	EXPECT_EQ(read(), 0u);
	lmdb::run_write(store->env(),
					[&](lmdb::Txn &txn) { StoreWriter(*store, txn).put_purged_since_walk(300000000000ull); });
	EXPECT_EQ(read(), 300000000000ull);
	lmdb::run_write(store->env(), [&](lmdb::Txn &txn) { StoreWriter(*store, txn).put_purged_since_walk(0); });
	EXPECT_EQ(read(), 0u);
}

} // namespace
} // namespace hannoy
