/*
 * prefetch_test.cpp: the read-ahead advice stays within its budget, covers the whole file when
 * the file fits, and otherwise starts from the top of the graph.
 */
#include <gtest/gtest.h>

#include <unistd.h>

#include "core/graph/builder.hpp"
#include "core/graph/prefetch.hpp"
#include "test_util.hpp"

namespace hannoy
{
namespace
{

std::unique_ptr<IndexStore>
built_store(const test::TempPath &tmp, uint32_t n, uint32_t dims)
{
	IndexMeta meta;
	meta.params.metric = Metric::L2;
	meta.params.dims = dims;
	meta.params.m = 8;
	meta.params.ef_construction = 32;
	meta.level_seed = 7;
	auto store = IndexStore::create(tmp.path(), meta, IndexStore::Options());
	auto data = test::clustered_vectors(n, dims, 10, 3);
	IndexBuilder builder(*store);
	for (uint32_t i = 0; i < n; i++) {
		auto stored = test::stored_form(Metric::L2, &data[static_cast<size_t>(i) * dims], dims);
		builder.add(HeapTid{i / 100 + 1, static_cast<uint16_t>(i % 100 + 1)}, stored.data());
	}
	builder.finish(nullptr);
	return store;
}

TEST(Prefetch, ZeroBudgetDoesNothing)
{
	test::TempPath tmp;
	auto store = built_store(tmp, 2000, 64);
	PrefetchStats stats = prefetch_search_start(*store, 0);
	EXPECT_EQ(stats.advised_bytes, 0u);
	EXPECT_EQ(stats.ranges, 0u);
}

TEST(Prefetch, WholeFileWhenItFits)
{
	test::TempPath tmp;
	auto store = built_store(tmp, 2000, 64);
	uint64_t file_bytes = store->env().file_bytes();
	PrefetchStats stats = prefetch_search_start(*store, file_bytes + 4096);
	EXPECT_EQ(stats.ranges, 1u);
	EXPECT_GE(stats.advised_bytes, file_bytes);
	EXPECT_EQ(stats.upper_nodes, 0u);
}

TEST(Prefetch, UpperLayersWithinBudget)
{
	test::TempPath tmp;
	auto store = built_store(tmp, 4000, 256); /* 1 kB vectors: the file is several MB */
	uint64_t file_bytes = store->env().file_bytes();
	size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
	for (size_t budget : {page * 4, page * 64, static_cast<size_t>(file_bytes / 4)}) {
		PrefetchStats stats = prefetch_search_start(*store, budget);
		EXPECT_LE(stats.advised_bytes, budget) << "budget " << budget;
		EXPECT_GT(stats.advised_bytes, 0u) << "budget " << budget;
		EXPECT_GT(stats.upper_nodes, 0u) << "budget " << budget;
	}
	/* With room for every upper-layer vector, all of them (about n / m nodes) are advised. */
	PrefetchStats all = prefetch_search_start(*store, static_cast<size_t>(file_bytes / 2));
	EXPECT_GT(all.upper_nodes, 4000u / 8 / 2);
	EXPECT_LT(all.upper_nodes, 4000u / 8 * 2);
}

} // namespace
} // namespace hannoy
