/*
 * graph_test.cpp: HNSW quality and invariants of the core, against brute force on seeded data:
 * bulk build, incremental inserts, resumable scans past ef, and the verifier itself.
 */
#include <gtest/gtest.h>

#include <set>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.hpp"
#include "core/graph/builder.hpp"
#include "core/graph/store_graph.hpp"
#include "core/graph/verify.hpp"
#include "core/store/residency.hpp"
#include "test_util.hpp"

namespace hannoy
{
namespace
{

struct Fixture {
	test::TempPath tmp;
	std::unique_ptr<IndexStore> store;
	std::vector<std::vector<uint8_t>> stored; /* by item id */
	Metric metric;
	uint32_t dims;

	Fixture(Metric metric_, uint32_t dims_, uint16_t m = 16, uint16_t efc = 64,
			Quantization quantization = Quantization::None)
		: metric(metric_), dims(dims_)
	{
		IndexMeta meta;
		meta.params.metric = metric;
		meta.params.quantization = quantization;
		meta.params.dims = dims;
		meta.params.m = m;
		meta.params.ef_construction = efc;
		meta.level_seed = 42;
		store = IndexStore::create(tmp.path(), meta, IndexStore::Options());
	}

	void build(const std::vector<float> &data)
	{
		IndexBuilder builder(*store);
		uint32_t n = dims == 0 ? 0 : static_cast<uint32_t>(data.size() / dims);
		for (uint32_t i = 0; i < n; i++) {
			stored.push_back(test::stored_form(metric, &data[static_cast<size_t>(i) * dims], dims));
			uint32_t id =
				builder.add(HeapTid{i / 100 + 1, static_cast<uint16_t>(i % 100 + 1)}, stored.back().data());
			ASSERT_EQ(id, i);
		}
		builder.finish(nullptr);
	}

	/* A parallel build as the glue runs it: `loaders` participants load rows round-robin
	 * into one file (sharing a block counter, each leaving holes in its last block), then
	 * the last one links the graph with `threads` more threads. */
	void build_parallel(const std::vector<float> &data, unsigned loaders, unsigned threads)
	{
		uint32_t shared_blocks = 0;
		std::vector<std::unique_ptr<IndexBuilder>> builders;
		for (unsigned i = 0; i < loaders; i++)
			builders.push_back(std::make_unique<IndexBuilder>(*store, &shared_blocks, 4096));
		uint32_t n = static_cast<uint32_t>(data.size() / dims);
		for (uint32_t i = 0; i < n; i++) {
			stored.push_back(test::stored_form(metric, &data[static_cast<size_t>(i) * dims], dims));
			builders[i % loaders]->add(HeapTid{i / 100 + 1, static_cast<uint16_t>(i % 100 + 1)},
									   stored.back().data());
		}
		for (unsigned i = 0; i + 1 < loaders; i++)
			builders[i]->finish_loading();
		PrivateConstruction construction(threads);
		builders.back()->finish(nullptr, &construction);
		ASSERT_EQ(builders.back()->rows(), n);
	}

	void insert(const std::vector<float> &data, uint32_t first_row, size_t batch)
	{
		Inserter inserter(*store);
		uint32_t n = static_cast<uint32_t>(data.size() / dims);
		std::vector<std::vector<uint8_t>> pending;
		std::vector<NewItem> items;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t row = first_row + i;
			pending.push_back(test::stored_form(metric, &data[static_cast<size_t>(i) * dims], dims));
			if (pending.size() == batch || i + 1 == n) {
				items.clear();
				for (size_t j = 0; j < pending.size(); j++) {
					uint32_t r = row + 1 - static_cast<uint32_t>(pending.size()) + static_cast<uint32_t>(j);
					items.push_back(
						NewItem{HeapTid{r / 100 + 1, static_cast<uint16_t>(r % 100 + 1)}, pending[j].data()});
				}
				ASSERT_EQ(inserter.insert(items, dims), pending.size());
				for (auto &p : pending)
					stored.push_back(std::move(p));
				pending.clear();
			}
		}
	}

	/* First k results of a scan. */
	/* First k rows of a scan (rows, through the items' heap TIDs, as an index scan returns them:
	 * identical vectors share an item). Row r has TID (r / 100 + 1, r % 100 + 1). */
	std::vector<uint32_t> search(const uint8_t *query, uint32_t ef, size_t k)
	{
		ScanCursor scan(store->cached_meta(), store->centroid(), query, dims, ef);
		std::vector<Candidate> out;
		std::vector<uint32_t> rows;
		size_t resolved = 0;
		while (rows.size() < k) {
			lmdb::Txn txn(store->env(), true);
			StoreReader reader(*store, txn);
			Bitmap tombstones = reader.tombstones();
			bool more = scan.next(
				reader, [&](uint32_t id) { return !tombstones.contains(id); }, out);
			for (; resolved < out.size(); resolved++) {
				ItemRecord item;
				if (reader.item(out[resolved].id, &item))
					for (const HeapTid &tid : item.tids)
						rows.push_back((tid.block - 1) * 100 + (tid.offset - 1));
			}
			if (!more)
				break;
		}
		if (rows.size() > k)
			rows.resize(k);
		return rows;
	}

	double mean_recall(const std::vector<float> &queries, uint32_t ef, size_t k)
	{
		Space space(metric, dims);
		uint32_t nq = static_cast<uint32_t>(queries.size() / dims);
		double total = 0;
		for (uint32_t q = 0; q < nq; q++) {
			auto query = test::stored_form(metric, &queries[static_cast<size_t>(q) * dims], dims);
			total +=
				test::recall(test::brute_force(space, stored, query.data(), k), search(query.data(), ef, k));
		}
		return total / nq;
	}

	void expect_sound()
	{
		VerifyReport report = verify_store(*store, true);
		for (const auto &p : report.problems)
			ADD_FAILURE() << p;
		EXPECT_EQ(report.unreachable, 0u);
		/* Rows, not items: identical vectors share one item. */
		size_t rows = 0;
		for (const auto &v : stored)
			rows += !v.empty();
		EXPECT_EQ(report.tids, rows);
	}
};

/* Live items other than the entry point that no live item links to on layer 0. */
uint32_t
items_without_in_links(IndexStore &store)
{
	lmdb::Txn txn(store.env(), true);
	StoreReader reader(store, txn);
	IndexMeta meta = reader.meta();
	Bitmap dead = reader.tombstones();
	uint32_t orphans = 0;
	std::vector<uint32_t> in;
	for (uint32_t id = 0; id < meta.next_item; id++) {
		if (id == meta.entry_point || !reader.has_item(id))
			continue;
		in.clear();
		reader.in_links(id, 0, in);
		orphans += std::all_of(in.begin(), in.end(), [&](uint32_t s) { return dead.contains(s); }) ? 1 : 0;
	}
	return orphans;
}

TEST(Graph, BulkBuildRecallL2)
{
	Fixture f(Metric::L2, 32);
	auto data = test::clustered_vectors(5100, 32, 20, 1);
	f.build(std::vector<float>(data.begin(), data.begin() + 5000 * 32));
	f.expect_sound();
	double r = f.mean_recall(std::vector<float>(data.begin() + 5000 * 32, data.end()), 40, 10);
	std::printf("bulk build L2 recall@10 (ef 40): %.4f\n", r);
	EXPECT_GE(r, 0.95);
}

TEST(Graph, BulkBuildRecallCosineAndInnerProduct)
{
	for (Metric metric : {Metric::Cosine, Metric::InnerProduct, Metric::L1}) {
		Fixture f(metric, 24);
		f.build(test::random_vectors(3000, 24, 3));
		f.expect_sound();
		double r = f.mean_recall(test::random_vectors(50, 24, 4), 64, 10);
		std::printf("bulk build %s recall@10 (ef 64): %.4f\n", metric_name(metric), r);
		EXPECT_GE(r, 0.90) << metric_name(metric);
	}
}

TEST(Graph, IncrementalInsertsKeepQuality)
{
	Fixture f(Metric::L2, 32);
	auto data = test::clustered_vectors(4100, 32, 20, 5);
	std::vector<float> first(data.begin(), data.begin() + 2000 * 32);
	std::vector<float> rest(data.begin() + 2000 * 32, data.begin() + 4000 * 32);
	f.build(first);
	f.insert(rest, 2000, 37);
	f.expect_sound();
	double r = f.mean_recall(std::vector<float>(data.begin() + 4000 * 32, data.end()), 40, 10);
	std::printf("build + inserts recall@10: %.4f\n", r);
	EXPECT_GE(r, 0.95);
}

TEST(Graph, BinaryQuantizationWithRerankingKeepsRecall)
{
	/* Traversal over sign bits, exact distances for the final order: recall@10 >= 0.90 on
	 * 256-dimensional data at the default ef_search, for each metric that supports it. The
	 * data has the shape of embeddings: 100 overlapping clusters. */
	for (Metric metric : {Metric::L2, Metric::Cosine, Metric::L1}) {
		Fixture f(metric, 256, 16, 64, Quantization::Binary);
		auto data = test::clustered_vectors(5100, 256, 100, 31, 1.0f);
		f.build(std::vector<float>(data.begin(), data.begin() + 5000 * 256));
		f.expect_sound();
		EXPECT_EQ(f.store->centroid().size(), 256u);
		double r = f.mean_recall(std::vector<float>(data.begin() + 5000 * 256, data.end()), 40, 10);
		std::printf("binary quantization %s recall@10 (ef 40): %.4f\n", metric_name(metric), r);
		EXPECT_GE(r, 0.90) << metric_name(metric);
	}
}

TEST(Graph, BinaryQuantizedFileOpensWhileBuilt)
{
	/* The workers of a parallel build open the file after rows are loaded and before the
	 * leader writes the codes' centroid; a finished file has it. */
	Fixture f(Metric::L2, 32, 16, 64, Quantization::Binary);
	auto data = test::clustered_vectors(600, 32, 10, 33, 1.0f);
	IndexBuilder builder(*f.store);
	for (uint32_t i = 0; i < 600; i++) {
		f.stored.push_back(test::stored_form(Metric::L2, &data[static_cast<size_t>(i) * 32], 32));
		builder.add(HeapTid{i / 100 + 1, static_cast<uint16_t>(i % 100 + 1)}, f.stored.back().data());
	}
	builder.finish_loading();
	std::unique_ptr<IndexStore> worker;
	EXPECT_NO_THROW(worker = IndexStore::open(f.tmp.path(), IndexStore::Options()));
	EXPECT_TRUE(worker == nullptr || worker->centroid().empty());
	worker.reset();
	builder.finish(nullptr);
	auto reopened = IndexStore::open(f.tmp.path(), IndexStore::Options());
	EXPECT_EQ(reopened->centroid().size(), 32u);
	EXPECT_EQ(reopened->centroid(), f.store->centroid());
}

TEST(Graph, BinaryQuantizationInsertsAndOrder)
{
	Fixture f(Metric::Cosine, 64, 16, 64, Quantization::Binary);
	auto data = test::clustered_vectors(3100, 64, 50, 32, 1.0f);
	f.build(std::vector<float>(data.begin(), data.begin() + 1500 * 64));
	f.insert(std::vector<float>(data.begin() + 1500 * 64, data.begin() + 3000 * 64), 1500, 100);
	f.expect_sound();
	double r = f.mean_recall(std::vector<float>(data.begin() + 3000 * 64, data.end()), 80, 10);
	std::printf("binary quantization after inserts recall@10 (ef 80): %.4f\n", r);
	EXPECT_GE(r, 0.90);
	/* Results come in exact-distance order even though the graph is walked by hamming. */
	auto query = test::stored_form(Metric::Cosine, &data[3000 * 64], 64);
	ScanCursor scan(f.store->cached_meta(), f.store->centroid(), query.data(), 64, 10);
	std::vector<Candidate> out;
	for (int i = 0; i < 20; i++) {
		lmdb::Txn txn(f.store->env(), true);
		StoreReader reader(*f.store, txn);
		if (!scan.next(reader, AcceptAll(), out))
			break;
	}
	ASSERT_GE(out.size(), 100u);
	/* Drained to the end, a quantized scan returns nearly every row despite strict order. */
	for (;;) {
		lmdb::Txn txn(f.store->env(), true);
		StoreReader reader(*f.store, txn);
		if (!scan.next(reader, AcceptAll(), out))
			break;
	}
	std::printf("drained quantized scan returned %zu of 3000 rows\n", out.size());
	EXPECT_GE(out.size(), 2850u);
	Space exact(Metric::Cosine, 64);
	for (size_t i = 0; i < out.size(); i++) {
		EXPECT_FLOAT_EQ(out[i].dist, exact.distance(query.data(), f.stored[out[i].id].data()));
		if (i > 0) {
			EXPECT_LE(out[i - 1].dist, out[i].dist);
		}
	}
}

TEST(Graph, HammingOnRandomBitStrings)
{
	/* 256-bit random strings, which have no structure to exploit: recall@10 >= 0.95 at
	 * ef_search 200 (0.73 at the default 40). */
	const uint32_t bits = 256, n = 5000;
	test::TempPath tmp;
	IndexMeta meta;
	meta.params.metric = Metric::Hamming;
	meta.params.dims = bits;
	meta.level_seed = 42;
	auto store = IndexStore::create(tmp.path(), meta, IndexStore::Options());
	std::mt19937 rng(33);
	std::vector<std::vector<uint8_t>> stored(n + 50, std::vector<uint8_t>(bits / 8));
	for (auto &v : stored)
		for (auto &byte : v)
			byte = static_cast<uint8_t>(rng());
	{
		IndexBuilder builder(*store);
		for (uint32_t i = 0; i < n; i++)
			builder.add(HeapTid{i + 1, 1}, stored[i].data());
		builder.finish(nullptr);
	}
	Space space(Metric::Hamming, bits);
	std::vector<std::vector<uint8_t>> indexed(stored.begin(), stored.begin() + n);
	double total = 0;
	for (uint32_t q = n; q < n + 50; q++) {
		ScanCursor scan(store->cached_meta(), store->centroid(), stored[q].data(), bits, 200);
		std::vector<Candidate> out;
		lmdb::Txn txn(store->env(), true);
		StoreReader reader(*store, txn);
		scan.next(reader, AcceptAll(), out);
		/* Many ties at equal hamming distance: count a result right if it is no farther than
		 * the true 10th neighbour. */
		auto truth = test::brute_force(space, indexed, stored[q].data(), 10);
		float tenth = space.distance(stored[q].data(), indexed[truth.back()].data());
		size_t hits = 0;
		for (size_t i = 0; i < std::min<size_t>(10, out.size()); i++)
			hits += out[i].dist <= tenth;
		total += hits / 10.0;
	}
	std::printf("hamming 256-bit recall@10 (ef 200): %.4f\n", total / 50);
	EXPECT_GE(total / 50, 0.95);
	VerifyReport report = verify_store(*store, true);
	EXPECT_TRUE(report.ok());
}

TEST(Graph, DuplicateVectorsDoNotTrapSearches)
{
	/* Half the rows share one vector. Distance 0 is never pruned by the heuristic, so without
	 * a cap those rows would only link each other: a closed clique, unreachable or a trap. */
	Fixture f(Metric::L2, 16);
	auto data = test::clustered_vectors(2100, 16, 10, 41, 1.0f);
	for (uint32_t i = 0; i < 2000; i += 2)
		std::copy(data.begin(), data.begin() + 16, data.begin() + static_cast<size_t>(i) * 16);
	f.build(std::vector<float>(data.begin(), data.begin() + 1000 * 16));
	EXPECT_EQ(count_unreachable(*f.store), 0u);
	f.insert(std::vector<float>(data.begin() + 1000 * 16, data.begin() + 2000 * 16), 1000, 50);
	std::printf("unreachable after inserts: %u\n", count_unreachable(*f.store));
	repair_reachability(*f.store);
	f.expect_sound();
	/* Queries near the distinct rows still find them (duplicates are all at one point). */
	double r = f.mean_recall(std::vector<float>(data.begin() + 2000 * 16, data.end()), 40, 10);
	std::printf("recall@10 with half the rows identical: %.4f\n", r);
	EXPECT_GE(r, 0.95);
}

TEST(Graph, CoarseCodesStayConnected)
{
	/* Binary codes of 4-dimensional vectors take 16 values: masses of identical codes. */
	Fixture f(Metric::L2, 4, 16, 64, Quantization::Binary);
	std::vector<float> data;
	for (uint32_t i = 1; i <= 1000; i++)
		for (float x : {std::sin(i * 1.0f), std::cos(i * 1.0f), std::sin(i * 2.0f), std::cos(i * 3.0f)})
			data.push_back(x);
	f.build(data);
	f.expect_sound();
	EXPECT_EQ(count_unreachable(*f.store), 0u);
}

TEST(Graph, RowsStoredClusterByClusterBuildAGoodGraph)
{
	/* A bulk build shuffles its insertion order, so rows stored grouped by cluster (the worst
	 * order for HNSW) give the same quality as random order, and every item is reachable. */
	Fixture f(Metric::L2, 64);
	auto data = test::cluster_sorted_vectors(10000, 64, 50, 21);
	f.build(data);
	f.expect_sound();
	double r = f.mean_recall(test::shifted_rows(data, 64, 100, 0.5f), 40, 10);
	std::printf("cluster-ordered bulk build recall@10 (ef 40): %.4f\n", r);
	EXPECT_GE(r, 0.99);
}

TEST(Graph, RowsInsertedClusterByClusterStayFindable)
{
	/* Incremental inserts cannot reorder their input: the beam on the upper layers and the
	 * guaranteed incoming link keep such a graph searchable. */
	Fixture f(Metric::L2, 64);
	auto data = test::cluster_sorted_vectors(6000, 64, 30, 22);
	f.build(std::vector<float>(data.begin(), data.begin() + 64));
	f.insert(std::vector<float>(data.begin() + 64, data.end()), 1, 500);
	/* Later inserts can prune an item's last incoming link; the repair VACUUM runs fixes it. */
	VerifyReport before = verify_store(*f.store, true);
	EXPECT_EQ(count_unreachable(*f.store), before.unreachable);
	uint32_t added = repair_reachability(*f.store);
	EXPECT_GE(added, before.unreachable > 0 ? 1u : 0u);
	EXPECT_EQ(count_unreachable(*f.store), 0u);
	EXPECT_EQ(repair_reachability(*f.store), 0u) << "a second repair finds nothing to do";
	f.expect_sound();
	double r = f.mean_recall(test::shifted_rows(data, 64, 100, 0.5f), 40, 10);
	std::printf("cluster-ordered inserts recall@10 (ef 40): %.4f\n", r);
	EXPECT_GE(r, 0.95);
}

TEST(Graph, ReachabilityCheckInterval)
{
	EXPECT_EQ(reachability_check_interval(0), kMinReachabilityCheckInterval);
	EXPECT_EQ(reachability_check_interval(8191), 256u);
	EXPECT_EQ(reachability_check_interval(16384), 1024u);
	EXPECT_EQ(reachability_check_interval(20000), 1024u);
	EXPECT_EQ(reachability_check_interval(32768), 2048u);
	EXPECT_EQ(reachability_check_interval(uint64_t(1) << 40), 1u << 30);
}

TEST(Graph, InsertsRelinkUnreachableItemsPeriodically)
{
	/* Short lists and clustered rows: pruning often takes an item's last incoming link. Each
	 * batch runs in an Inserter of its own, as each flush of a backend does. The batch whose
	 * new ids cross a multiple of the check interval leaves every live item reachable. */
	Fixture f(Metric::L2, 32, 4, 16);
	auto data = test::cluster_sorted_vectors(8000, 32, 40, 23);
	f.build(std::vector<float>(data.begin(), data.begin() + 2000 * 32));
	ASSERT_EQ(count_unreachable(*f.store), 0u);
	const uint32_t batch = 37;
	uint32_t checks = 0, relinked = 0, max_unreachable = 0;
	for (uint32_t first = 2000; first < 8000; first += batch) {
		uint32_t end = std::min<uint32_t>(8000, first + batch);
		std::vector<NewItem> items;
		for (uint32_t r = first; r < end; r++) {
			f.stored.push_back(test::stored_form(f.metric, &data[static_cast<size_t>(r) * 32], 32));
			items.push_back(NewItem{HeapTid{r / 100 + 1, static_cast<uint16_t>(r % 100 + 1)}, nullptr});
		}
		for (uint32_t r = first; r < end; r++)
			items[r - first].vector = f.stored[r].data();
		Inserter inserter(*f.store);
		ASSERT_EQ(inserter.insert(items, 32), end - first);
		uint32_t unreachable = count_unreachable(*f.store);
		max_unreachable = std::max(max_unreachable, unreachable);
		/* Items a pruned list left without incoming links are linked again by the same batch. */
		ASSERT_EQ(items_without_in_links(*f.store), 0u) << "after the batch from row " << first;
		if (inserter.checked_reachability()) {
			checks++;
			relinked += inserter.relinked();
			EXPECT_EQ(unreachable, 0u) << "after the check of the batch from row " << first;
		}
	}
	std::printf("%u reachability checks relinked %u items; at most %u unreachable in between\n", checks,
				relinked, max_unreachable);
	/* New ids 2000..7999: 24 multiples of 256 are crossed (the index stays below 8,192 items). */
	EXPECT_EQ(checks, 24u);
	EXPECT_GT(relinked, 0u) << "no item lost its last incoming link: the test exercises nothing";
	EXPECT_LT(max_unreachable, 256u);
	repair_reachability(*f.store);
	f.expect_sound();
}

TEST(Graph, InsertsIntoEmptyIndex)
{
	Fixture f(Metric::L2, 8, 4, 16);
	f.build({});
	f.expect_sound();
	f.insert(test::random_vectors(500, 8, 7), 0, 1);
	f.expect_sound();
	double r = f.mean_recall(test::random_vectors(30, 8, 8), 40, 5);
	EXPECT_GE(r, 0.95);
}

TEST(Graph, FirstVectorFixesTheDimension)
{
	Fixture f(Metric::L2, 0);
	f.build({});
	EXPECT_EQ(f.store->cached_meta().params.dims, 0u);
	f.expect_sound();
	Inserter inserter(*f.store);
	float v3[3] = {1, 2, 3};
	float v4[4] = {1, 2, 3, 4};
	EXPECT_EQ(inserter.insert({NewItem{HeapTid{1, 1}, reinterpret_cast<const uint8_t *>(v3)}}, 3), 1u);
	EXPECT_EQ(f.store->cached_meta().params.dims, 3u);
	EXPECT_EQ(f.store->cached_meta().vector_bytes, 12u);
	try {
		inserter.insert({NewItem{HeapTid{1, 2}, reinterpret_cast<const uint8_t *>(v4)}}, 4);
		FAIL() << "a second dimension was accepted";
	} catch (const Error &e) {
		EXPECT_EQ(e.code(), ErrorCode::DimensionMismatch);
		EXPECT_STREQ(e.what(), "expected 3 dimensions, not 4");
	}
	/* The failed insert left nothing behind, and the file reopens with its dimension. */
	f.stored.push_back(
		std::vector<uint8_t>(reinterpret_cast<uint8_t *>(v3), reinterpret_cast<uint8_t *>(v3) + 12));
	f.dims = 3;
	f.expect_sound();
	std::string path = f.tmp.path();
	f.store.reset();
	auto reopened = IndexStore::open(path, IndexStore::Options());
	EXPECT_EQ(reopened->cached_meta().params.dims, 3u);
	EXPECT_EQ(reopened->cached_meta().live_items, 1u);
}

TEST(Graph, InsertIsIdempotentPerTid)
{
	Fixture f(Metric::L2, 4);
	f.build(test::random_vectors(100, 4, 9));
	Inserter inserter(*f.store);
	float v[4] = {1, 2, 3, 4};
	std::vector<NewItem> again{NewItem{HeapTid{1, 1}, reinterpret_cast<const uint8_t *>(v)}};
	EXPECT_EQ(inserter.insert(again, 4), 0u);
	f.expect_sound();
}

TEST(Graph, ScanContinuesPastEfInOrder)
{
	Fixture f(Metric::L2, 16);
	auto data = test::random_vectors(1500, 16, 10);
	f.build(data);
	Space space(Metric::L2, 16);
	auto query = test::stored_form(Metric::L2, &data[0], 16);
	ScanCursor scan(f.store->cached_meta(), f.store->centroid(), query.data(), 16, 10);
	std::vector<Candidate> out;
	for (;;) {
		lmdb::Txn txn(f.store->env(), true);
		StoreReader reader(*f.store, txn);
		if (!scan.next(reader, AcceptAll(), out))
			break;
	}
	/* Strictly ordered, no duplicates, and (nearly) everything reachable comes out. */
	for (size_t i = 1; i < out.size(); i++)
		ASSERT_LE(out[i - 1].dist, out[i].dist);
	std::vector<uint32_t> ids;
	for (auto &c : out)
		ids.push_back(c.id);
	std::sort(ids.begin(), ids.end());
	EXPECT_TRUE(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
	EXPECT_GE(out.size(), 1400u);
	EXPECT_EQ(out[0].id, 0u) << "a vector's own row comes first";
	/* The first 100 are (nearly) the true 100 nearest, although ef was 10. */
	auto truth = test::brute_force(space, f.stored, query.data(), 100);
	std::vector<uint32_t> first100;
	for (size_t i = 0; i < 100; i++)
		first100.push_back(out[i].id);
	EXPECT_GE(test::recall(truth, first100), 0.9);
}

TEST(Graph, TombstonedItemsAreNeverReturned)
{
	Fixture f(Metric::L2, 8);
	auto data = test::random_vectors(600, 8, 11);
	f.build(data);
	Bitmap dead;
	for (uint32_t id = 0; id < 600; id += 3)
		dead.add(id);
	lmdb::run_write(f.store->env(), [&](lmdb::Txn &txn) {
		StoreWriter w(*f.store, txn);
		w.put_tombstones(dead);
	});
	auto query = test::stored_form(Metric::L2, &data[0], 8);
	auto got = f.search(query.data(), 40, 300);
	EXPECT_GE(got.size(), 300u);
	for (uint32_t id : got)
		EXPECT_FALSE(dead.contains(id)) << id;
}

/* Deletes rows through their TIDs, as VACUUM does, and forgets their vectors. */
void
delete_rows(Fixture &f, const std::vector<uint32_t> &rows)
{
	std::vector<HeapTid> tids;
	for (uint32_t r : rows) {
		tids.push_back(HeapTid{r / 100 + 1, static_cast<uint16_t>(r % 100 + 1)});
		f.stored[r].clear();
	}
	delete_tids(*f.store, tids);
}

TEST(Graph, RepairWorkFollowsTheDeletionsNotTheIndex)
{
	/* Twenty rows deleted from 20,000: the repair reads the deleted items' in-links and rewrites
	 * exactly the lists that linked them, nothing else, and leaves a sound graph. */
	Fixture f(Metric::L2, 16);
	f.build(test::clustered_vectors(20000, 16, 30, 61, 1.5f));
	std::vector<uint32_t> gone;
	for (uint32_t r = 5; r < 20000; r += 997)
		gone.push_back(r);
	Bitmap dead;
	for (uint32_t r : gone)
		dead.add(r);
	std::set<std::pair<uint32_t, uint8_t>> linking;
	uint64_t records = 0;
	{
		lmdb::Txn txn(f.store->env(), true);
		StoreReader reader(*f.store, txn);
		for (uint32_t r : gone) {
			ItemRecord item;
			ASSERT_TRUE(reader.item(r, &item));
			records += item.level + 2u; /* its layers, and the first one above them */
			for (uint8_t layer = 0; layer <= item.level; layer++) {
				std::vector<uint32_t> in;
				reader.in_links(r, layer, in);
				EXPECT_FALSE(in.empty());
				for (uint32_t source : in)
					if (!dead.contains(source))
						linking.emplace(source, layer);
			}
		}
	}
	delete_rows(f, gone);
	WriteGate gate;
	RepairStats stats = repair_deleted(*f.store, gate);
	EXPECT_EQ(stats.items_purged, gone.size());
	EXPECT_EQ(stats.lists_read, records);
	EXPECT_EQ(stats.lists_rewritten, linking.size());
	EXPECT_FALSE(stats.walk_due) << "20 of 20,000 purged: no full walk is due yet";
	EXPECT_EQ(items_without_in_links(*f.store), 0u);
	f.expect_sound();
}

TEST(Graph, ChurnKeepsRecallAndInvariants)
{
	/* Five rounds of: delete 10% at random, insert as many, repair. After each round every
	 * invariant holds, and recall@10 stays >= 0.95 and within 0.005 of a fresh build of the
	 * same rows (500 queries: with 100, one query's miss moves recall by 0.001 and the gap
	 * swung by more than the tolerance between runs; lists pruned down to the heuristic's
	 * choice at each repair lost up to 0.01). */
	const uint32_t dims = 64, n = 20000, rounds = 5, churn = n / 10, kQueries = 500;
	auto data = test::clustered_vectors(n + rounds * churn + kQueries, dims, 40, 51, 1.5f);
	auto slice = [&](uint32_t first, uint32_t count) {
		return std::vector<float>(data.begin() + static_cast<size_t>(first) * dims,
								  data.begin() + static_cast<size_t>(first + count) * dims);
	};
	std::vector<float> queries = slice(n + rounds * churn, kQueries);
	Fixture f(Metric::L2, dims);
	f.build(slice(0, n));
	std::mt19937 rng(52);
	std::vector<uint32_t> live(n);
	for (uint32_t i = 0; i < n; i++)
		live[i] = i;
	WriteGate gate;
	for (uint32_t round = 0; round < rounds; round++) {
		std::shuffle(live.begin(), live.end(), rng);
		std::vector<uint32_t> gone(live.end() - churn, live.end());
		live.resize(live.size() - churn);
		delete_rows(f, gone);
		uint32_t first = n + round * churn;
		f.insert(slice(first, churn), first, 500);
		for (uint32_t r = first; r < first + churn; r++)
			live.push_back(r);
		RepairStats stats = repair_deleted(*f.store, gate);
		/* As VACUUM does: 10% purged is more than the 1/16 that makes a full walk due. */
		EXPECT_TRUE(stats.walk_due);
		EXPECT_EQ(items_without_in_links(*f.store), 0u) << "round " << round;
		repair_reachability(*f.store);
		EXPECT_EQ(stats.items_purged, churn);
		VerifyReport report = verify_store(*f.store, true);
		for (const auto &p : report.problems)
			ADD_FAILURE() << "round " << round << ": " << p;
		EXPECT_EQ(report.tombstoned, 0u);
		EXPECT_EQ(report.tids, n);

		double churned = f.mean_recall(queries, 40, 10);
		Fixture fresh(Metric::L2, dims);
		std::vector<float> rows;
		for (uint32_t r = 0; r < f.stored.size(); r++)
			if (!f.stored[r].empty())
				rows.insert(rows.end(), data.begin() + static_cast<size_t>(r) * dims,
							data.begin() + static_cast<size_t>(r + 1) * dims);
		fresh.build(rows);
		double rebuilt = fresh.mean_recall(queries, 40, 10);
		std::printf("churn round %u: recall@10 %.4f (fresh build %.4f), %llu lists repaired\n", round + 1,
					churned, rebuilt, static_cast<unsigned long long>(stats.lists_rewritten));
		EXPECT_GE(churned, 0.95);
		EXPECT_GE(churned, rebuilt - 0.005);
	}
}

TEST(Graph, RepairKeepsLiveNeighboursAndDegree)
{
	/* Repairing around deleted items never drops a live neighbour (that would take an incoming
	 * link from an item that was not deleted) and refills the deleted ones' places from their
	 * own neighbours, so lists keep their length where the deleted items had live neighbours. */
	Fixture f(Metric::L2, 32);
	auto data = test::clustered_vectors(3000, 32, 20, 53, 1.5f);
	f.build(data);
	auto lists = [&](uint32_t n) {
		std::vector<std::vector<uint32_t>> out(n);
		lmdb::Txn txn(f.store->env(), true);
		StoreReader reader(*f.store, txn);
		for (uint32_t id = 0; id < n; id++)
			reader.links(id, 0, out[id]);
		return out;
	};
	auto before = lists(3000);
	std::vector<uint32_t> gone;
	Bitmap dead;
	for (uint32_t r = 0; r < 3000; r += 7) {
		gone.push_back(r);
		dead.add(r);
	}
	delete_rows(f, gone);
	WriteGate gate;
	RepairStats stats = repair_deleted(*f.store, gate);
	EXPECT_EQ(stats.items_purged, gone.size());
	auto after = lists(3000);
	uint64_t degree_before = 0, degree_after = 0;
	for (uint32_t id = 0; id < 3000; id++) {
		if (dead.contains(id))
			continue;
		for (uint32_t n : before[id]) {
			if (!dead.contains(n)) {
				EXPECT_NE(std::find(after[id].begin(), after[id].end(), n), after[id].end())
					<< "item " << id << " lost its live neighbour " << n;
			}
		}
		for (uint32_t n : after[id])
			EXPECT_FALSE(dead.contains(n)) << "item " << id << " still links deleted item " << n;
		degree_before += before[id].size();
		degree_after += after[id].size();
	}
	std::printf("mean layer-0 degree of live items: %.2f before, %.2f after the repair\n",
				static_cast<double>(degree_before) / (3000 - gone.size()),
				static_cast<double>(degree_after) / (3000 - gone.size()));
	EXPECT_GE(degree_after, degree_before * 99 / 100);
	repair_reachability(*f.store);
	f.expect_sound();
}

TEST(Graph, DeletingEverythingAndTheEntryPoint)
{
	Fixture f(Metric::L2, 8);
	auto data = test::random_vectors(600, 8, 53);
	f.build(std::vector<float>(data.begin(), data.begin() + 300 * 8));
	WriteGate gate;
	/* The entry point's row first. */
	uint32_t entry = f.store->cached_meta().entry_point;
	delete_rows(f, {entry});
	RepairStats stats = repair_deleted(*f.store, gate);
	EXPECT_TRUE(stats.entry_point_replaced);
	EXPECT_NE(f.store->cached_meta().entry_point, entry);
	repair_reachability(*f.store);
	f.expect_sound();
	/* Then every row: the index is empty, and takes inserts again. */
	std::vector<uint32_t> all;
	for (uint32_t r = 0; r < 300; r++)
		if (!f.stored[r].empty())
			all.push_back(r);
	delete_rows(f, all);
	repair_deleted(*f.store, gate);
	EXPECT_EQ(f.store->cached_meta().entry_point, kNoItem);
	EXPECT_EQ(f.store->cached_meta().live_items, 0u);
	VerifyReport empty = verify_store(*f.store, true);
	EXPECT_TRUE(empty.ok());
	EXPECT_EQ(empty.link_records, 0u);
	f.insert(std::vector<float>(data.begin() + 300 * 8, data.end()), 300, 50);
	f.expect_sound();
	double r = f.mean_recall(test::random_vectors(20, 8, 54), 40, 5);
	EXPECT_GE(r, 0.95);
}

TEST(Graph, ReplacingTheEntryPointReadsItsNeighbourhoodOnly)
{
	/* The entry point deleted again and again: each time the replacement is a live item of the
	 * highest level left, found from the old entry point's neighbourhood, not by reading every
	 * item of the index. */
	Fixture f(Metric::L2, 16);
	f.build(test::clustered_vectors(8000, 16, 20, 71, 1.5f));
	WriteGate gate;
	for (int round = 0; round < 12; round++) {
		uint32_t entry = f.store->cached_meta().entry_point;
		ASSERT_NE(entry, kNoItem);
		delete_rows(f, {entry});
		RepairStats stats = repair_deleted(*f.store, gate);
		ASSERT_TRUE(stats.entry_point_replaced);
		EXPECT_LT(stats.entry_point_records_read, 800u) << "round " << round;
		uint8_t highest = 0;
		{
			lmdb::Txn txn(f.store->env(), true);
			StoreReader reader(*f.store, txn);
			for (uint32_t id = 0; id < f.stored.size(); id++) {
				ItemRecord item;
				if (!f.stored[id].empty() && reader.item(id, &item))
					highest = std::max(highest, item.level);
			}
		}
		IndexMeta meta = f.store->cached_meta();
		EXPECT_NE(meta.entry_point, entry);
		EXPECT_EQ(meta.max_level, highest) << "round " << round;
	}
	f.expect_sound();
}

TEST(Graph, AQueryEqualToAStoredVectorFindsItFirst)
{
	/* "Rows like this row": a query equal to a stored vector returns that row first even with
	 * the narrowest beam, where the graph search alone settles on a neighbour now and then;
	 * and after the row is deleted, its neighbours come first instead. */
	for (Quantization quantization : {Quantization::None, Quantization::Binary}) {
		Fixture f(Metric::L2, 32, 16, 64, quantization);
		f.build(test::clustered_vectors(3000, 32, 30, 81, 1.5f));
		uint32_t missed = 0;
		for (uint32_t r = 0; r < 3000; r++) {
			auto rows = f.search(f.stored[r].data(), 1, 1);
			if (rows.empty() || rows[0] != r)
				missed++;
		}
		EXPECT_EQ(missed, 0u) << "quantization " << static_cast<int>(quantization);
		std::vector<uint8_t> gone = f.stored[7];
		delete_rows(f, {7});
		auto rows = f.search(gone.data(), 40, 5);
		ASSERT_EQ(rows.size(), 5u);
		EXPECT_EQ(std::find(rows.begin(), rows.end(), 7u), rows.end());
	}
}

TEST(Graph, VerifierCatchesDamage)
{
	Fixture f(Metric::L2, 8);
	f.build(test::random_vectors(300, 8, 12));
	lmdb::run_write(f.store->env(), [&](lmdb::Txn &txn) {
		StoreWriter w(*f.store, txn);
		uint32_t bad[] = {5, 7, 999999};
		w.put_links(5, 0, bad, 3);
	});
	VerifyReport report = verify_store(*f.store, true);
	ASSERT_FALSE(report.ok());
	bool self = false, missing = false;
	for (const auto &p : report.problems) {
		self = self || p.find("links to itself") != std::string::npos;
		missing = missing || p.find("missing item 999999") != std::string::npos;
	}
	EXPECT_TRUE(self);
	EXPECT_TRUE(missing);
}

TEST(Graph, VerifierCatchesABlockHeaderAtOddsWithItsSize)
{
	/* Pixels: byte blocks, whose size says U8; a header saying raw is damage. */
	Fixture f(Metric::L2, 64);
	std::vector<float> data(2000 * 64);
	std::mt19937 rng(3);
	for (float &x : data)
		x = static_cast<float>(rng() % 256);
	f.build(data);
	EXPECT_TRUE(verify_store(*f.store, true).ok());
	lmdb::run_write(f.store->env(), [&](lmdb::Txn &txn) {
		MDB_val value;
		auto key = block_key(0);
		ASSERT_TRUE(txn.get(f.store->vectors_dbi(), key.data(), key.size(), &value));
		std::vector<uint8_t> record(static_cast<const uint8_t *>(value.mv_data),
									static_cast<const uint8_t *>(value.mv_data) + value.mv_size);
		ASSERT_EQ(record[0], static_cast<uint8_t>(Encoding::U8));
		record[0] = static_cast<uint8_t>(Encoding::Raw);
		txn.put(f.store->vectors_dbi(), key.data(), key.size(), record.data(), record.size());
	});
	VerifyReport report = verify_store(*f.store, true);
	ASSERT_FALSE(report.ok());
	bool found = false;
	for (const auto &p : report.problems)
		found = found || p.find("vector block 0 of") != std::string::npos;
	EXPECT_TRUE(found);
}

TEST(Graph, LevelsAreReproducible)
{
	uint32_t counts[4] = {0, 0, 0, 0};
	for (uint32_t id = 0; id < 100000; id++) {
		uint8_t level = draw_level(7, id, 16);
		EXPECT_EQ(level, draw_level(7, id, 16));
		counts[std::min<uint8_t>(level, 3)]++;
	}
	/* P(level >= 1) = 1/16, P(level >= 2) = 1/256. */
	EXPECT_NEAR(counts[1] + counts[2] + counts[3], 100000 / 16, 400);
	EXPECT_NEAR(counts[2] + counts[3], 100000 / 256, 120);
}

TEST(Graph, LocalityOrderGroupsNearbyItemsAndKeepsEveryItem)
{
	const uint32_t n = 20000, dims = 32;
	auto data = test::clustered_vectors(n, dims, 16, 5);
	BuildGraphShape shape;
	shape.items = n;
	shape.level_seed = 42;
	std::vector<uint64_t> region(BuildGraph::region_bytes(shape) / 8 + 1);
	std::vector<uint8_t> present(n, 1);
	present[17] = 0; /* folded into an identical item: never inserted */
	BuildGraph::initialize(region.data(), region.size() * 8, shape, present);
	std::vector<VectorRef> vectors(n);
	for (uint32_t i = 0; i < n; i++)
		vectors[i] = VectorRef{reinterpret_cast<const uint8_t *>(&data[static_cast<size_t>(i) * dims])};
	std::vector<float> mean(dims, 0.0f);
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t d = 0; d < dims; d++)
			mean[d] += data[static_cast<size_t>(i) * dims + d] / n;
	const std::vector<uint32_t> shuffled = BuildGraph::insertion_order(region.data());
	const Space space(Metric::L2, dims);

	/* Hamming spaces keep the shuffled order. */
	BuildGraph::arrange_for_locality(region.data(), Space(Metric::Hamming, dims * 32), vectors, mean);
	EXPECT_EQ(BuildGraph::insertion_order(region.data()), shuffled);

	BuildGraph::arrange_for_locality(region.data(), space, vectors, mean);
	const std::vector<uint32_t> arranged = BuildGraph::insertion_order(region.data());
	ASSERT_EQ(arranged.size(), n - 1);
	EXPECT_EQ(std::set<uint32_t>(arranged.begin(), arranged.end()),
			  std::set<uint32_t>(shuffled.begin(), shuffled.end()));
	/* The upper layers' items keep their places at the front; the rest follow. */
	size_t upper = 0;
	while (upper < shuffled.size() && BuildGraph::region_level(region.data(), shuffled[upper]) > 0)
		upper++;
	ASSERT_GT(upper, 0u);
	ASSERT_LT(upper, shuffled.size());
	EXPECT_TRUE(std::equal(shuffled.begin(), shuffled.begin() + upper, arranged.begin()));
	for (size_t i = upper; i < arranged.size(); i++)
		ASSERT_EQ(BuildGraph::region_level(region.data(), arranged[i]), 0);
	/* Consecutive insertions are much closer to each other than in the shuffled order. */
	auto mean_step = [&](const std::vector<uint32_t> &order) {
		double sum = 0;
		for (size_t i = upper + 1; i < order.size(); i++)
			sum += std::sqrt(space.distance(vectors[order[i - 1]], vectors[order[i]]));
		return sum / static_cast<double>(order.size() - upper - 1);
	};
	double before = mean_step(shuffled), after = mean_step(arranged);
	std::printf("mean distance between consecutive insertions: shuffled %.2f, arranged %.2f\n", before,
				after);
	EXPECT_LT(after, 0.7 * before);
	/* The same region arranges the same way. */
	std::vector<uint64_t> again(region.size());
	BuildGraph::initialize(again.data(), again.size() * 8, shape, present);
	BuildGraph::arrange_for_locality(again.data(), space, vectors, mean);
	EXPECT_EQ(BuildGraph::insertion_order(again.data()), arranged);
}

/* Every list of every item on every layer. */
std::vector<std::vector<uint32_t>>
all_links(IndexStore &store)
{
	lmdb::Txn txn(store.env(), true);
	StoreReader reader(store, txn);
	IndexMeta meta = reader.meta();
	std::vector<std::vector<uint32_t>> lists;
	for (uint32_t id = 0; id < meta.next_item; id++)
		for (int layer = 0; layer <= meta.max_level; layer++) {
			lists.emplace_back();
			reader.links(id, static_cast<uint8_t>(layer), lists.back());
		}
	return lists;
}

/*
 * Vectors of small integers are stored one byte per element. Halving every value (exact in
 * floats, and no longer integers) scales every euclidean and manhattan distance and every dot
 * product by a power of two, exactly, and keeps the vectors raw: both indexes must make the
 * same graph and return the same rows, through bulk build, inserts that mix in vectors that
 * do not fit a byte (their blocks turn raw), a duplicate joining its twin, and deletion.
 */
void
check_bytes_behave_like_floats(Metric metric, Quantization quantization)
{
	const uint32_t dims = 40, n = 3000, extra = 600;
	auto bytes_data = test::clustered_vectors(n + extra, dims, 12, 21, 2.0f);
	for (size_t i = 0; i < bytes_data.size(); i++) {
		float v = std::round(bytes_data[i] * 25.0f + 128.0f);
		bytes_data[i] = std::min(255.0f, std::max(0.0f, v));
	}
	for (uint32_t r = n + extra / 2; r < n + extra; r += 3)
		bytes_data[static_cast<size_t>(r) * dims] += 0.25f; /* no longer a byte */
	std::vector<float> half_data(bytes_data.size());
	for (size_t i = 0; i < bytes_data.size(); i++)
		half_data[i] = bytes_data[i] * 0.5f;

	Fixture bytes(metric, dims, 16, 64, quantization), halves(metric, dims, 16, 64, quantization);
	const size_t split = static_cast<size_t>(n) * dims;
	bytes.build(std::vector<float>(bytes_data.begin(), bytes_data.begin() + split));
	halves.build(std::vector<float>(half_data.begin(), half_data.begin() + split));
	bytes.insert(std::vector<float>(bytes_data.begin() + split, bytes_data.end()), n, 50);
	halves.insert(std::vector<float>(half_data.begin() + split, half_data.end()), n, 50);

	/* How each file stored its vectors. */
	auto encodings = [](IndexStore &store) {
		lmdb::Txn txn(store.env(), true);
		StoreReader reader(store, txn);
		std::vector<Encoding> out;
		for (uint32_t id = 0; id < reader.meta().next_item; id++)
			out.push_back(reader.vector(id).encoding);
		return out;
	};
	std::vector<Encoding> byte_encodings = encodings(*bytes.store);
	ASSERT_EQ(byte_encodings.size(), n + extra);
	EXPECT_EQ(byte_encodings.front(), Encoding::U8);
	EXPECT_EQ(byte_encodings.back(), Encoding::Raw);
	for (Encoding e : encodings(*halves.store))
		ASSERT_EQ(e, Encoding::Raw);

	EXPECT_EQ(all_links(*bytes.store), all_links(*halves.store));
	for (uint32_t q = 0; q < 40; q++) {
		const float *query = &bytes_data[static_cast<size_t>(q) * 71 % n * dims];
		std::vector<float> half_query(query, query + dims);
		for (float &x : half_query)
			x = x * 0.5f + 0.125f;
		std::vector<float> byte_query(half_query);
		for (float &x : byte_query)
			x *= 2.0f;
		auto got = bytes.search(reinterpret_cast<const uint8_t *>(byte_query.data()), 40, 10);
		EXPECT_EQ(got, halves.search(reinterpret_cast<const uint8_t *>(half_query.data()), 40, 10)) << q;
		EXPECT_EQ(got.size(), 10u);
	}
	bytes.expect_sound();
	if (metric == Metric::L2 && quantization == Quantization::None) {
		EXPECT_GE(
			bytes.mean_recall(std::vector<float>(bytes_data.begin(), bytes_data.begin() + 40 * dims), 40, 10),
			0.95);
	}

	/* A duplicate of a byte-stored row joins its item. */
	uint32_t items_before = bytes.store->cached_meta().next_item;
	bytes.insert(std::vector<float>(bytes_data.begin() + 5 * dims, bytes_data.begin() + 6 * dims), n + extra,
				 1);
	EXPECT_EQ(bytes.store->cached_meta().next_item, items_before);

	std::vector<uint32_t> doomed;
	for (uint32_t r = 0; r < n + extra; r += 7)
		doomed.push_back(r);
	delete_rows(bytes, doomed);
	delete_rows(halves, doomed);
	WriteGate gate;
	repair_deleted(*bytes.store, gate);
	repair_deleted(*halves.store, gate);
	bytes.expect_sound();
	halves.expect_sound();
}

TEST(Graph, ByteVectorsBehaveExactlyLikeTheirFloatsL2)
{
	check_bytes_behave_like_floats(Metric::L2, Quantization::None);
}

TEST(Graph, ByteVectorsBehaveExactlyLikeTheirFloatsInnerProduct)
{
	check_bytes_behave_like_floats(Metric::InnerProduct, Quantization::None);
}

TEST(Graph, ByteVectorsBehaveExactlyLikeTheirFloatsManhattan)
{
	check_bytes_behave_like_floats(Metric::L1, Quantization::None);
}

TEST(Graph, ByteVectorsBehaveExactlyLikeTheirFloatsBinaryQuantized)
{
	check_bytes_behave_like_floats(Metric::L2, Quantization::Binary);
}

TEST(ParallelBuild, ThreadsBuildAGraphAsGoodAsSerial)
{
	/* Uniform data in 32 dimensions: hard enough that recall shows a worse graph. */
	auto data = test::random_vectors(6300, 32, 11);
	std::vector<float> rows(data.begin(), data.begin() + 6000 * 32);
	std::vector<float> queries(data.begin() + 6000 * 32, data.end());
	Fixture serial(Metric::L2, 32);
	serial.build(rows);
	serial.expect_sound();
	Fixture parallel(Metric::L2, 32);
	parallel.build_parallel(rows, 1, 3);
	parallel.expect_sound();
	double rs = serial.mean_recall(queries, 40, 10);
	double rp = parallel.mean_recall(queries, 40, 10);
	std::printf("recall@10 (ef 40): serial %.4f, 4 threads %.4f\n", rs, rp);
	EXPECT_GE(rp, 0.93);
	EXPECT_NEAR(rp, rs, 0.01);
}

TEST(ParallelBuild, ManyThreadsOnASmallGraphKeepListsSound)
{
	/* Small lists and many threads make items inserted at once select each other often. */
	for (uint32_t seed = 0; seed < 4; seed++) {
		Fixture f(Metric::L2, 8, 4, 16);
		f.build_parallel(test::clustered_vectors(3000, 8, 5, 40 + seed), 2, 7);
		f.expect_sound();
	}
}

TEST(ParallelBuild, LoadersSharingAFileLeaveOnlyHoles)
{
	for (Quantization q : {Quantization::None, Quantization::Binary}) {
		Fixture f(Metric::Cosine, 48, 16, 64, q);
		auto data = test::clustered_vectors(4600, 48, 20, 12);
		/* Some identical rows, loaded by different participants, still share one item. */
		for (uint32_t i = 0; i < 50; i++)
			std::copy(data.begin() + i * 48, data.begin() + (i + 1) * 48, data.begin() + (1000 + i) * 48);
		f.build_parallel(std::vector<float>(data.begin(), data.begin() + 4000 * 48), 3, 1);
		f.expect_sound();
		const IndexMeta meta = f.store->cached_meta();
		EXPECT_EQ(meta.live_items, 4000u - 50u);
		EXPECT_GE(meta.next_item, 4000u); /* holes in the loaders' last blocks */
		std::vector<float> queries(data.begin() + 4400 * 48, data.end());
		double r = f.mean_recall(queries, q == Quantization::Binary ? 80 : 40, 10);
		std::printf("3 loaders, %s: recall@10 %.4f, %u slots for 4000 rows\n",
					q == Quantization::Binary ? "binary" : "full vectors", r, meta.next_item);
		EXPECT_GE(r, q == Quantization::Binary ? 0.85 : 0.95);
		/* Inserts after a build with holes go on from the last slot. */
		f.insert(std::vector<float>(data.begin() + 4000 * 48, data.begin() + 4400 * 48), 4000, 100);
		f.expect_sound();
		EXPECT_GE(f.mean_recall(queries, q == Quantization::Binary ? 80 : 40, 10),
				  q == Quantization::Binary ? 0.85 : 0.95);
	}
}

TEST(ParallelBuild, AFailingParticipantStopsTheOthers)
{
	Fixture f(Metric::L2, 16);
	auto data = test::random_vectors(3000, 16, 13);
	IndexBuilder builder(*f.store);
	for (uint32_t i = 0; i < 3000; i++) {
		f.stored.push_back(test::stored_form(Metric::L2, &data[static_cast<size_t>(i) * 16], 16));
		builder.add(HeapTid{i / 100 + 1, static_cast<uint16_t>(i % 100 + 1)}, f.stored.back().data());
	}
	PrivateConstruction construction(2);
	/* The leader is cancelled after its first progress report; the threads must stop too. */
	EXPECT_THROW(builder.finish(
					 [](BuildPhase phase, uint64_t done, uint64_t) {
						 if (phase == BuildPhase::BuildingGraph && done > 0)
							 throw Error(ErrorCode::Internal, "cancelled");
					 },
					 &construction),
				 Error);
}

} // namespace
} // namespace hannoy

namespace hannoy
{
namespace
{

TEST(Graph, SearchesOfAFileOutOfMemoryReadAheadAndFindTheSameRows)
{
	/* Results of a file whose pages are cached, then of the same file reopened after its pages
	 * were dropped from the page cache: the searches notice, read ahead, and return exactly
	 * the same rows (read-ahead is advice, never a change of what is read). */
	Fixture f(Metric::L2, 256);
	auto data = test::clustered_vectors(4000, 256, 20, 61, 1.5f);
	f.build(data);
	auto queries = test::clustered_vectors(30, 256, 20, 62, 1.5f);
	std::vector<std::vector<uint8_t>> stored_queries;
	std::vector<std::vector<uint32_t>> warm;
	for (uint32_t q = 0; q < 30; q++) {
		stored_queries.push_back(test::stored_form(Metric::L2, &queries[static_cast<size_t>(q) * 256], 256));
		warm.push_back(f.search(stored_queries.back().data(), 40, 10));
	}
	EXPECT_FALSE(f.store->cold_reads().active());

	f.store.reset();
	int fd = ::open(f.tmp.path().c_str(), O_RDONLY);
	ASSERT_GE(fd, 0);
	off_t size = ::lseek(fd, 0, SEEK_END);
	::fdatasync(fd);
	ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	void *map = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(map, MAP_FAILED);
	bool dropped = !is_resident(static_cast<const uint8_t *>(map) + size / 2);
	::munmap(map, static_cast<size_t>(size));
	::close(fd);
	if (!dropped)
		GTEST_SKIP() << "this file system keeps the file in memory (tmpfs?)";

	f.store = IndexStore::open(f.tmp.path(), IndexStore::Options());
	for (uint32_t q = 0; q < 30; q++) {
		EXPECT_EQ(f.search(stored_queries[q].data(), 40, 10), warm[q]) << "query " << q;
		if (q == 0) {
			EXPECT_TRUE(f.store->cold_reads().active()) << "the first search waited for disk reads";
		}
	}
}

} // namespace
} // namespace hannoy
