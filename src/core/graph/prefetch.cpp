#include "core/graph/prefetch.hpp"
#include "core/store/residency.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <system_error>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

namespace hannoy
{

namespace
{

/* The kernel reads at most its read-ahead window (read_ahead_kb) per advice call and ignores
 * the rest of a larger range: advise in pieces no larger than a typical window. */
constexpr uint64_t kAdviceChunk = uint64_t(2) << 20;

/* Runs `job` on a short-lived thread of its own: read-ahead advice may block while the kernel
 * queues the reads, and the caller has a query to answer meanwhile. The thread blocks every
 * signal, so the host process's signals keep reaching its own thread; jobs call nothing but
 * the kernel. False when no thread could be started (then nothing is done). */
bool
run_detached(std::function<void()> job)
{
	sigset_t all, previous;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &previous);
	bool started = true;
	try {
		std::thread(std::move(job)).detach();
	} catch (const std::system_error &) {
		started = false;
	}
	pthread_sigmask(SIG_SETMASK, &previous, nullptr);
	return started;
}

/* Page ranges to advise, merged before the madvise calls so that neighbouring values cost one
 * system call. */
class Advice
{
public:
	explicit Advice(size_t budget) : budget_(budget), page_(static_cast<uintptr_t>(sysconf(_SC_PAGESIZE))) {}

	/// Adds the pages holding [data, data + size); false once the budget is spent.
	bool add(const void *data, size_t size)
	{
		if (data == nullptr || size == 0)
			return spent_ < budget_;
		uintptr_t start = reinterpret_cast<uintptr_t>(data) & ~(page_ - 1);
		uintptr_t end = (reinterpret_cast<uintptr_t>(data) + size + page_ - 1) & ~(page_ - 1);
		if (spent_ + (end - start) > budget_)
			end = start + ((budget_ - spent_) & ~(page_ - 1));
		if (end > start) {
			ranges_.emplace_back(start, end);
			spent_ += end - start;
		}
		return spent_ + page_ <= budget_;
	}

	/// Merges the ranges and advises them in the background.
	PrefetchStats apply()
	{
		PrefetchStats stats;
		std::sort(ranges_.begin(), ranges_.end());
		std::vector<std::pair<uintptr_t, uintptr_t>> merged;
		for (size_t i = 0; i < ranges_.size();) {
			uintptr_t start = ranges_[i].first, end = ranges_[i].second;
			for (i++; i < ranges_.size() && ranges_[i].first <= end; i++)
				end = std::max(end, ranges_[i].second);
			merged.emplace_back(start, end);
			stats.advised_bytes += end - start;
		}
		stats.ranges = merged.size();
		if (merged.empty())
			return stats;
		bool started = run_detached([ranges = std::move(merged)] {
			/* Advice only: a failure (even on a file closed meanwhile) costs the speed-up,
			 * never correctness. */
			for (const auto &range : ranges)
				for (uintptr_t at = range.first; at < range.second; at += kAdviceChunk)
					read_ahead(reinterpret_cast<const void *>(at),
							   std::min<uintptr_t>(kAdviceChunk, range.second - at));
		});
		if (!started)
			stats = PrefetchStats();
		return stats;
	}

private:
	size_t budget_;
	uintptr_t page_;
	size_t spent_ = 0;
	std::vector<std::pair<uintptr_t, uintptr_t>> ranges_;
};

} // namespace

PrefetchStats
prefetch_search_start(IndexStore &store, size_t budget)
{
	if (budget == 0)
		return PrefetchStats();
	lmdb::Txn txn(store.env(), true);
	StoreReader reader(store, txn);
	IndexMeta meta = reader.meta();
	if (meta.entry_point == kNoItem)
		return PrefetchStats();
	Advice advice(budget);

	/* A file that fits the budget is read ahead whole: the first queries then find the pages
	 * they need in flight or in memory. The advice goes to a duplicate of the file's
	 * descriptor, which the thread closes, so closing the index meanwhile cannot redirect it
	 * (one short-lived descriptor: within the few a host process keeps spare for libraries). */
	uint64_t file_bytes = store.env().file_bytes();
	int fd = -1;
	if (file_bytes != 0 && file_bytes <= budget && mdb_env_get_fd(store.env().raw(), &fd) == MDB_SUCCESS) {
		PrefetchStats stats;
		int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (copy < 0)
			return stats;
		if (run_detached([copy, file_bytes] {
				for (uint64_t at = 0; at < file_bytes; at += kAdviceChunk)
					posix_fadvise(copy, static_cast<off_t>(at),
								  static_cast<off_t>(std::min<uint64_t>(kAdviceChunk, file_bytes - at)),
								  POSIX_FADV_WILLNEED);
				close(copy);
			})) {
			stats.advised_bytes = file_bytes;
			stats.ranges = 1;
		} else {
			close(copy);
		}
		return stats;
	}

	/* The upper layers, top first, breadth first from the entry point: their vectors. */
	size_t upper_nodes = 0;
	/* Quantized indexes traverse binary codes; the others, vectors. */
	bool quantized = meta.code_bytes != 0;
	auto traversed = [&](uint32_t id) {
		return quantized ? VectorRef{reader.code(id), Encoding::Raw} : reader.vector(id);
	};
	auto traversed_bytes = [&](VectorRef v) {
		return quantized ? meta.code_bytes : encoded_bytes(v.encoding, meta.vector_bytes, meta.params.dims);
	};
	std::unordered_set<uint32_t> seen{meta.entry_point};
	std::vector<uint32_t> neighbours;
	VectorRef entry = traversed(meta.entry_point);
	bool room = advice.add(entry.data, traversed_bytes(entry));
	for (int layer = meta.max_level; layer >= 1 && room; layer--) {
		/* Every node reached so far is on this layer too (a node's level covers every layer
		 * below it); expand along this layer's links. */
		std::vector<uint32_t> queue(seen.begin(), seen.end());
		for (size_t i = 0; i < queue.size() && room; i++) {
			neighbours.clear();
			if (!reader.links(queue[i], static_cast<uint8_t>(layer), neighbours))
				continue;
			for (uint32_t id : neighbours) {
				if (!seen.insert(id).second)
					continue;
				queue.push_back(id);
				upper_nodes++;
				VectorRef v = traversed(id);
				room = advice.add(v.data, traversed_bytes(v));
				if (!room)
					break;
			}
		}
	}
	PrefetchStats stats = advice.apply();
	stats.upper_nodes = upper_nodes;
	return stats;
}

} // namespace hannoy
