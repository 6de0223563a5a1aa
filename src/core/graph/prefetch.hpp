/*
 * prefetch.hpp: asks the kernel to read, in the background, the parts of an index file that
 * every search reads first, so that the first queries after a restart (or after the page cache
 * was dropped) do not pay one synchronous disk read per page they touch.
 */
#pragma once

#include <cstddef>

#include "core/store/index_store.hpp"

namespace hannoy
{

struct PrefetchStats {
	size_t advised_bytes = 0; ///< bytes of the file advised to be read ahead, whole pages
	size_t ranges = 0;        ///< madvise calls made
	size_t upper_nodes = 0;   ///< upper-layer nodes whose vectors were advised
};

/// Asks the kernel to read ahead, within `budget` bytes: the whole file when it fits; otherwise
/// the vectors (or binary codes) of the upper layers' nodes, top layer first, breadth first from
/// the entry point (every search starts there). Reads the upper layers' link lists itself; the
/// advice runs on a short-lived thread, so the call does not wait for the reads it asks for.
/// A budget of 0 does nothing.
PrefetchStats prefetch_search_start(IndexStore &store, size_t budget);

} // namespace hannoy
