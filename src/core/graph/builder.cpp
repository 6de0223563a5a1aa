/*
 * builder.cpp: bulk build orchestration (see builder.hpp).
 */
#include "builder.hpp"

#include "../pure_cpp.hpp"

namespace hannoy
{

namespace
{
constexpr uint32_t kProgressEvery = 1000;
constexpr uint32_t kLinksPerCommit = 50000;
} // namespace

void
IndexBuilder::finish(const Progress &progress)
{
	loader_.finish();
	const IndexMeta &meta = store_.cached_meta();
	uint32_t n = loader_.count();
	Space space(meta.params.metric, meta.params.dims);
	BuildGraph graph(space, meta.params.m, meta.params.ef_construction, meta.level_seed);
	graph.reserve(n);
	{
		lmdb::Txn txn(store_.env(), true);
		StoreReader reader(store_, txn);
		for (uint32_t id = 0; id < n; id++) {
			const uint8_t *vector = reader.vector(id);
			if (vector == nullptr)
				throw Error(ErrorCode::Internal, format("hannoy build lost the vector of item %u", id));
			graph.add(id, vector);
			if (progress && (id + 1) % kProgressEvery == 0)
				progress(BuildPhase::BuildingGraph, id + 1, n);
		}
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
