/*
 * builder.cpp: bulk build orchestration (see builder.hpp).
 */
#include "builder.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "../pure_cpp.hpp"

namespace hannoy
{

namespace
{
constexpr uint32_t kLinksPerCommit = 50000;
/* Progress is reported at most this often (in items linked). */
constexpr uint32_t kProgressEvery = 1000;
} // namespace

void *
PrivateConstruction::allocate(size_t bytes)
{
	memory_.reset(new uint64_t[(bytes + 7) / 8]);
	return memory_.get();
}

void
PrivateConstruction::run(void *, const std::function<void(bool leader)> &participate)
{
	std::vector<std::thread> threads;
	std::exception_ptr failure;
	std::mutex mutex;
	for (unsigned i = 0; i < threads_; i++)
		threads.emplace_back([&] {
			try {
				participate(false);
			} catch (...) {
				std::lock_guard<std::mutex> guard(mutex);
				if (!failure)
					failure = std::current_exception();
			}
		});
	try {
		participate(true);
	} catch (...) {
		std::lock_guard<std::mutex> guard(mutex);
		if (!failure)
			failure = std::current_exception();
	}
	for (std::thread &t : threads)
		t.join();
	if (failure)
		std::rethrow_exception(failure);
}

std::vector<VectorRef>
construction_vectors(StoreReader &reader, uint32_t n, bool codes)
{
	std::vector<VectorRef> vectors(n);
	for (uint32_t id = 0; id < n; id++) {
		vectors[id] = codes ? VectorRef{reader.code(id), Encoding::Raw} : reader.vector(id);
		if (!vectors[id])
			throw Error(ErrorCode::Internal, format("hannoy build lost the vector of item %u", id));
	}
	return vectors;
}

namespace
{

/* Links claimed items; a participant that fails stops the others at their next claim. */
void
participate(void *region, const Space &space, const std::vector<VectorRef> &vectors,
			const std::function<void(uint32_t)> &between)
{
	try {
		BuildGraph graph(region, space, vectors);
		graph.insert_claimed(between);
	} catch (...) {
		BuildGraph::abandon(region);
		throw;
	}
}

} // namespace

void
link_claimed_items(IndexStore &store, void *region, const std::function<void(uint32_t linked)> &between)
{
	lmdb::Txn txn(store.env(), true);
	StoreReader reader(store, txn);
	/* The meta as the leader left it after loading (dimensions, largest norm). */
	store.set_cached_meta(reader.meta());
	Traversal traversal = Traversal::for_construction(store.cached_meta());
	uint32_t n = BuildGraph::region_items(region);
	std::vector<VectorRef> vectors = construction_vectors(reader, n, traversal.codes);
	participate(region, traversal.space, vectors, between);
}

IndexBuilder::Census
IndexBuilder::take_census(uint32_t n)
{
	const IndexMeta &meta = store_.cached_meta();
	Census census;
	census.present.assign(n, 0);
	const bool float_vectors = metric_uses_floats(meta.params.metric);
	const bool inner_product = meta.params.metric == Metric::InnerProduct;
	const uint32_t dims = meta.params.dims;
	std::vector<double> sum(float_vectors ? dims : 0, 0.0);
	float max_norm_sq = 0.0f;
	std::vector<float> decoded(float_vectors ? dims : 0);
	lmdb::Txn txn(store_.env(), true);
	StoreReader reader(store_, txn);
	MDB_cursor *cursor = nullptr;
	lmdb::check(mdb_cursor_open(txn.raw(), store_.items_dbi(), &cursor), "mdb_cursor_open", store_.path());
	MDB_val key, value;
	for (int rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST); rc == 0;
		 rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
		uint32_t id = decode_item_key(key.mv_data, key.mv_size);
		if (id >= n) {
			mdb_cursor_close(cursor);
			throw Error(ErrorCode::Internal, format("hannoy build found item %u beyond its %u slots", id, n));
		}
		census.present[id] = 1;
		VectorRef vector = reader.vector(id);
		if (!vector) {
			mdb_cursor_close(cursor);
			throw Error(ErrorCode::Internal, format("hannoy build lost the vector of item %u", id));
		}
		census.hashes.emplace_back(stored_vector_hash(vector, meta.vector_bytes, dims), id);
		const float *floats = reinterpret_cast<const float *>(vector.data);
		if (vector.encoding != Encoding::Raw) {
			decode_vector(vector, meta.vector_bytes, dims, reinterpret_cast<uint8_t *>(decoded.data()));
			floats = decoded.data();
		}
		if (float_vectors)
			for (uint32_t i = 0; i < dims; i++)
				sum[i] += floats[i];
		if (inner_product) {
			float norm_sq = 0.0f;
			for (uint32_t i = 0; i < dims; i++)
				norm_sq += floats[i] * floats[i];
			max_norm_sq = std::max(max_norm_sq, norm_sq);
		}
	}
	mdb_cursor_close(cursor);
	size_t items = census.hashes.size();
	census.mean.assign(sum.size(), 0.0f);
	for (size_t i = 0; i < sum.size() && items > 0; i++)
		census.mean[i] = static_cast<float>(sum[i] / static_cast<double>(items));
	census.max_norm = std::sqrt(max_norm_sq);
	return census;
}

void
IndexBuilder::write_codes(uint32_t n, const std::vector<float> &centroid)
{
	const IndexMeta &meta = store_.cached_meta();
	lmdb::run_write(store_.env(), [&](lmdb::Txn &txn) { StoreWriter(store_, txn).put_centroid(centroid); });

	/* Codes are computed in read transactions and written in write transactions, a chunk
	 * of blocks at a time, so no read transaction is open when the map must grow. */
	const size_t code_bytes = meta.code_bytes;
	const uint32_t per_block = meta.codes_per_block;
	const size_t block_bytes = kBlockHeaderBytes + code_bytes * per_block;
	const uint32_t blocks_per_chunk =
		static_cast<uint32_t>(std::max<size_t>(1, (size_t(32) << 20) / block_bytes));
	uint32_t blocks = (n + per_block - 1) / per_block;
	std::vector<uint8_t> chunk;
	std::vector<float> decoded(meta.params.dims);
	for (uint32_t first = 0; first < blocks; first += blocks_per_chunk) {
		uint32_t last = std::min(blocks, first + blocks_per_chunk);
		chunk.assign(static_cast<size_t>(last - first) * block_bytes, 0);
		{
			lmdb::Txn txn(store_.env(), true);
			StoreReader reader(store_, txn);
			for (uint32_t id = first * per_block; id < std::min(n, last * per_block); id++) {
				VectorRef vector = reader.vector(id);
				if (!vector)
					throw Error(ErrorCode::Internal, format("hannoy build lost the vector of item %u", id));
				size_t offset = static_cast<size_t>(id / per_block - first) * block_bytes +
								kBlockHeaderBytes + (id % per_block) * code_bytes;
				decode_vector(vector, meta.vector_bytes, meta.params.dims,
							  reinterpret_cast<uint8_t *>(decoded.data()));
				binary_quantize_centered(decoded.data(), centroid.data(), meta.params.dims,
										 chunk.data() + offset);
			}
		}
		lmdb::run_write(store_.env(), [&](lmdb::Txn &txn) {
			for (uint32_t block = first; block < last; block++) {
				auto key = block_key(block);
				txn.put(store_.codes_dbi(), key.data(), key.size(),
						chunk.data() + static_cast<size_t>(block - first) * block_bytes, block_bytes,
						MDB_APPEND);
			}
		});
	}
}

void
IndexBuilder::fold_duplicates(Census &census)
{
	const IndexMeta &meta = store_.cached_meta();
	std::vector<uint8_t> &present = census.present;
	auto &hashes = census.hashes;
	std::sort(hashes.begin(), hashes.end());

	/* Identical vectors have equal hashes: compare bytes within each run of equal hashes. */
	std::vector<std::pair<uint32_t, uint32_t>> folds; /* (duplicate, the item it joins) */
	{
		lmdb::Txn txn(store_.env(), true);
		StoreReader reader(store_, txn);
		std::vector<std::pair<uint32_t, size_t>> groups; /* (first item, TIDs so far) */
		for (size_t start = 0; start < hashes.size();) {
			size_t end = start + 1;
			while (end < hashes.size() && hashes[end].first == hashes[start].first)
				end++;
			groups.clear();
			for (size_t i = start; i < end && end - start > 1; i++) {
				uint32_t id = hashes[i].second;
				VectorRef vector = reader.vector(id);
				bool joined = false;
				for (auto &group : groups) {
					if (group.second < kMaxTidsPerItem && same_vector(reader.vector(group.first), vector,
																	  meta.vector_bytes, meta.params.dims)) {
						folds.emplace_back(id, group.first);
						group.second++;
						present[id] = 0;
						joined = true;
						break;
					}
				}
				if (!joined)
					groups.emplace_back(id, 1);
			}
			start = end;
		}
	}

	constexpr size_t kFoldsPerCommit = 50000;
	for (size_t start = 0; start < folds.size(); start += kFoldsPerCommit) {
		size_t end = std::min(folds.size(), start + kFoldsPerCommit);
		lmdb::run_write(store_.env(), [&](lmdb::Txn &txn) {
			StoreWriter writer(store_, txn);
			ItemRecord target, duplicate;
			for (size_t i = start; i < end; i++) {
				auto [id, into] = folds[i];
				if (!writer.item(id, &duplicate) || !writer.item(into, &target))
					throw Error(ErrorCode::Internal, format("hannoy build lost item %u or %u", id, into));
				for (const HeapTid &tid : duplicate.tids) {
					target.tids.push_back(tid);
					writer.put_tid(tid, into);
				}
				writer.put_item(into, target);
				writer.delete_item(id);
			}
		});
	}

	constexpr size_t kHashesPerCommit = 500000;
	for (size_t start = 0; start < hashes.size(); start += kHashesPerCommit) {
		size_t end = std::min(hashes.size(), start + kHashesPerCommit);
		lmdb::run_write(store_.env(), [&](lmdb::Txn &txn) {
			StoreWriter writer(store_, txn);
			for (size_t i = start; i < end; i++)
				if (present[hashes[i].second])
					writer.put_hash(hashes[i].first, hashes[i].second, MDB_APPEND);
		});
	}
	hashes.clear();
	hashes.shrink_to_fit();
}

void
IndexBuilder::finish(const Progress &progress, GraphConstruction *construction)
{
	loader_.finish();
	{
		/* Another participant may have fixed the dimension (parallel load). */
		lmdb::Txn txn(store_.env(), true);
		store_.set_cached_meta(StoreReader(store_, txn).meta());
	}
	const IndexMeta &meta = store_.cached_meta();
	const uint32_t per_block = meta.vectors_per_block;
	/* A sole loader numbers its items densely; parallel loaders leave holes in their last
	 * blocks, so every reserved block counts. */
	uint64_t slots = shared_blocks_ != nullptr
						 ? uint64_t(__atomic_load_n(shared_blocks_, __ATOMIC_ACQUIRE)) * per_block
						 : loader_.added();
	if (meta.params.dims == 0)
		slots = 0;
	if (slots >= kNoItem)
		throw Error(ErrorCode::LimitExceeded, "hannoy index cannot hold more than 4294967294 items");
	const uint32_t n = static_cast<uint32_t>(slots);

	Census census = take_census(n);
	rows_ = static_cast<uint32_t>(census.hashes.size());
	fold_duplicates(census);
	std::vector<uint8_t> &present = census.present;
	uint32_t live = static_cast<uint32_t>(std::count(present.begin(), present.end(), 1));
	if (meta.params.metric == Metric::InnerProduct) {
		lmdb::run_write(store_.env(), [&](lmdb::Txn &txn) {
			StoreWriter writer(store_, txn);
			IndexMeta updated = writer.meta();
			updated.max_norm = census.max_norm;
			writer.put_meta(updated);
		});
	}
	Traversal traversal = Traversal::for_construction(store_.cached_meta());
	if (traversal.codes && n > 0)
		write_codes(n, census.mean);

	BuildGraphShape shape;
	shape.items = n;
	shape.m = meta.params.m;
	shape.ef_construction = meta.params.ef_construction;
	shape.level_seed = meta.level_seed;
	PrivateConstruction serial;
	GraphConstruction &runner = construction != nullptr ? *construction : serial;
	size_t bytes = BuildGraph::region_bytes(shape);
	void *region = runner.allocate(bytes);
	BuildGraph::initialize(region, bytes, shape, present);
	graph_memory_ = bytes;

	std::vector<VectorRef> vectors;
	std::unique_ptr<BuildGraph> graph;
	{
		lmdb::Txn txn(store_.env(), true);
		StoreReader reader(store_, txn);
		vectors = construction_vectors(reader, n, traversal.codes);
		BuildGraph::arrange_for_locality(region, traversal.space, vectors, census.mean);
		uint32_t reported = 0;
		auto report = [&](uint32_t linked) {
			if (progress && (linked - reported >= kProgressEvery || linked == live)) {
				reported = linked;
				progress(BuildPhase::BuildingGraph, linked, live);
			}
		};
		if (progress)
			progress(BuildPhase::BuildingGraph, 0, live);
		runner.run(region, [&](bool leader) {
			participate(region, traversal.space, vectors,
						leader ? std::function<void(uint32_t)>(report) : std::function<void(uint32_t)>());
		});
		graph = std::make_unique<BuildGraph>(region, traversal.space, vectors);
		if (graph->linked() != graph->to_link())
			throw Error(ErrorCode::Internal,
						format("hannoy build linked %u of %u items", graph->linked(), graph->to_link()));
		graph->connect_unreachable();
	}
	if (progress)
		progress(BuildPhase::WritingGraph, 0, live);
	graph->write_links(store_, kLinksPerCommit, [&](uint32_t done) {
		if (progress)
			progress(BuildPhase::WritingGraph, done, live);
	});
	lmdb::run_write(store_.env(), [&](lmdb::Txn &txn) {
		StoreWriter writer(store_, txn);
		IndexMeta updated = writer.meta();
		updated.next_item = n;
		updated.live_items = live;
		updated.entry_point = graph->entry_point();
		updated.max_level = graph->max_level();
		updated.seq++;
		writer.put_meta(updated);
	});
	store_.finish_build();
}

} // namespace hannoy
