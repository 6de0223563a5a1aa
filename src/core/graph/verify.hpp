/*
 * verify.hpp: checks every structural invariant of an index file.
 *
 * Used by unit tests after every mutation and by the SQL function hannoy_verify(). It reads
 * one consistent snapshot and reports problems instead of stopping at the first.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../store/index_store.hpp"

namespace hannoy
{

struct VerifyReport {
	uint64_t items = 0;        ///< item records
	uint64_t tids = 0;         ///< TID map entries
	uint64_t link_records = 0; ///< (item, layer) lists
	uint64_t links = 0;        ///< edges over all lists
	uint64_t tombstoned = 0;   ///< items deleted but not yet purged
	uint64_t reachable = 0;    ///< live items reachable from the entry point
	uint64_t unreachable = 0;  ///< live items that are not
	uint32_t max_level = 0;
	std::vector<std::string> problems; ///< empty when the file is sound (capped)

	bool ok() const { return problems.empty(); }
};

/// Verifies the file in one read transaction. With `check_reachability`, also walks the
/// graph from the entry point (memory proportional to the number of items).
VerifyReport verify_store(IndexStore &store, bool check_reachability);

} // namespace hannoy
