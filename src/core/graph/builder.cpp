/*
 * builder.cpp: bulk build orchestration (see builder.hpp).
 */
#include "builder.hpp"

#include <algorithm>
#include <cstring>

#include "../pure_cpp.hpp"

namespace hannoy
{

namespace
{
constexpr uint32_t kProgressEvery = 1000;
constexpr uint32_t kLinksPerCommit = 50000;
} // namespace

void
IndexBuilder::write_codes()
{
	const IndexMeta &meta = store_.cached_meta();
	uint32_t n = loader_.count();
	std::vector<float> centroid = loader_.mean();
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
	for (uint32_t first = 0; first < blocks; first += blocks_per_chunk) {
		uint32_t last = std::min(blocks, first + blocks_per_chunk);
		chunk.assign(static_cast<size_t>(last - first) * block_bytes, 0);
		{
			lmdb::Txn txn(store_.env(), true);
			StoreReader reader(store_, txn);
			for (uint32_t id = first * per_block; id < std::min(n, last * per_block); id++) {
				const uint8_t *vector = reader.vector(id);
				if (vector == nullptr)
					throw Error(ErrorCode::Internal, format("hannoy build lost the vector of item %u", id));
				size_t offset = static_cast<size_t>(id / per_block - first) * block_bytes +
								kBlockHeaderBytes + (id % per_block) * code_bytes;
				binary_quantize_centered(reinterpret_cast<const float *>(vector), centroid.data(),
										 meta.params.dims, chunk.data() + offset);
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

std::vector<uint8_t>
IndexBuilder::fold_duplicates()
{
	const IndexMeta &meta = store_.cached_meta();
	uint32_t n = loader_.count();
	std::vector<uint8_t> present(n, 1);
	auto &hashes = loader_.hashes();
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
				const uint8_t *vector = reader.vector(id);
				bool joined = false;
				for (auto &group : groups) {
					if (group.second < kMaxTidsPerItem &&
						std::memcmp(reader.vector(group.first), vector, meta.vector_bytes) == 0) {
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
	return present;
}

void
IndexBuilder::finish(const Progress &progress)
{
	loader_.finish();
	const IndexMeta &meta = store_.cached_meta();
	uint32_t n = loader_.count();
	std::vector<uint8_t> present = fold_duplicates();
	uint32_t live = static_cast<uint32_t>(std::count(present.begin(), present.end(), 1));
	if (meta.params.metric == Metric::InnerProduct) {
		lmdb::run_write(store_.env(), [&](lmdb::Txn &txn) {
			StoreWriter writer(store_, txn);
			IndexMeta updated = writer.meta();
			updated.max_norm = loader_.max_norm();
			writer.put_meta(updated);
		});
	}
	Traversal traversal = Traversal::for_construction(store_.cached_meta());
	if (traversal.codes && n > 0)
		write_codes();
	BuildGraph graph(traversal.space, meta.params.m, meta.params.ef_construction, meta.level_seed);
	{
		lmdb::Txn txn(store_.env(), true);
		StoreReader reader(store_, txn);
		std::vector<const uint8_t *> vectors(n);
		for (uint32_t id = 0; id < n; id++) {
			vectors[id] = traversal.codes ? reader.code(id) : reader.vector(id);
			if (vectors[id] == nullptr)
				throw Error(ErrorCode::Internal, format("hannoy build lost the vector of item %u", id));
		}
		graph.prepare(std::move(vectors), std::move(present));
		std::vector<uint32_t> order = graph.insertion_order();
		for (uint32_t i = 0; i < order.size(); i++) {
			graph.insert(order[i]);
			if (progress && (i + 1) % kProgressEvery == 0)
				progress(BuildPhase::BuildingGraph, i + 1, live);
		}
		graph.connect_unreachable();
	}
	graph_memory_ = graph.memory_bytes();
	if (progress)
		progress(BuildPhase::WritingGraph, 0, n);
	graph.write_links(store_, kLinksPerCommit, [&](uint32_t done) {
		if (progress)
			progress(BuildPhase::WritingGraph, done, n);
	});
	lmdb::run_write(store_.env(), [&](lmdb::Txn &txn) {
		StoreWriter writer(store_, txn);
		IndexMeta updated = writer.meta();
		updated.next_item = n;
		updated.live_items = live;
		updated.entry_point = graph.entry_point();
		updated.max_level = graph.max_level();
		updated.seq++;
		writer.put_meta(updated);
	});
	store_.finish_build();
}

} // namespace hannoy
