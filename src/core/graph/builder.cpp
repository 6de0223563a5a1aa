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
	{
		lmdb::Txn txn(store_.env(), true);
		StoreReader reader(store_, txn);
		std::vector<const uint8_t *> vectors(n);
		for (uint32_t id = 0; id < n; id++) {
			vectors[id] = reader.vector(id);
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
