/*
 * builder.cpp: bulk build orchestration (see builder.hpp).
 */
#include "builder.hpp"

#include <algorithm>

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

void
IndexBuilder::finish(const Progress &progress)
{
	loader_.finish();
	const IndexMeta &meta = store_.cached_meta();
	uint32_t n = loader_.count();
	Traversal traversal = Traversal::of(meta);
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
		graph.prepare(std::move(vectors));
		std::vector<uint32_t> order = graph.insertion_order();
		for (uint32_t i = 0; i < n; i++) {
			graph.insert(order[i]);
			if (progress && (i + 1) % kProgressEvery == 0)
				progress(BuildPhase::BuildingGraph, i + 1, n);
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
		updated.live_items = n;
		updated.entry_point = graph.entry_point();
		updated.max_level = graph.max_level();
		updated.seq++;
		writer.put_meta(updated);
	});
	store_.finish_build();
}

} // namespace hannoy
