/*
 * residency.hpp: whether the parts of an index file a search reads are in memory, and asking
 * the kernel to read them ahead when they are not.
 *
 * A search reads one vector after another, each where the previous distances led it. When the
 * file is not in the page cache (after a restart, or for an index larger than memory) every
 * vector is a synchronous disk read, one at a time. A search that knows it runs cold instead
 * asks for all the neighbours of a node at once (madvise WILLNEED), so their reads overlap.
 * Asking costs a system call per vector, so it is done only while reads are actually missing.
 */
#pragma once

#include <cstddef>
#include <cstdint>

namespace hannoy
{

/// Starts reading the pages of [data, data + size) of a file mapping in the background.
void read_ahead(const void *data, size_t size);
/// Whether the page holding `data` is in memory.
bool is_resident(const void *data);
/// Major page faults (faults that waited for a disk read) of the calling thread so far.
uint64_t major_faults();
/// Bytes of the file at `path` that are in the page cache (whole pages, the last one counted
/// in full), or -1 when the file cannot be opened, mapped or asked about. Maps the file
/// without reading it, so asking brings nothing into memory.
int64_t file_resident_bytes(const char *path);

/// Per process and index file: whether its searches should read ahead. Starts from the
/// residency of the first page a search reads, then follows the disk reads searches wait for.
class ColdReads
{
public:
	/// Searches wait for more disk reads than this before reading ahead again.
	static constexpr uint64_t kColdFaults = 8;

	/// Called with the first page a search reads; only the first call decides.
	void probe(const void *first_page)
	{
		if (state_ == State::Unknown)
			state_ = is_resident(first_page) ? State::Warm : State::Cold;
	}
	bool active() const { return state_ == State::Cold; }
	/// Scope of one step of a search (one batch of results), whose disk reads decide
	/// whether the next steps read ahead.
	class Step
	{
	public:
		explicit Step(ColdReads &reads) : reads_(reads), faults_at_begin_(major_faults()) {}
		~Step() { reads_.after_step(major_faults() - faults_at_begin_); }
		Step(const Step &) = delete;
		Step &operator=(const Step &) = delete;

	private:
		ColdReads &reads_;
		uint64_t faults_at_begin_;
	};
	void after_step(uint64_t waited_reads);

private:
	enum class State { Unknown, Warm, Cold };
	State state_ = State::Unknown;
};

} // namespace hannoy
