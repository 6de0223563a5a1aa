#include "core/store/residency.hpp"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

namespace hannoy
{

namespace
{

uintptr_t
page_size()
{
	static const uintptr_t size = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
	return size;
}

} // namespace

void
read_ahead(const void *data, size_t size)
{
	uintptr_t start = reinterpret_cast<uintptr_t>(data) & ~(page_size() - 1);
	uintptr_t end = reinterpret_cast<uintptr_t>(data) + size;
	/* Advice only: a failure leaves the search as it was. */
	(void)madvise(reinterpret_cast<void *>(start), end - start, MADV_WILLNEED);
}

bool
is_resident(const void *data)
{
	uintptr_t start = reinterpret_cast<uintptr_t>(data) & ~(page_size() - 1);
	unsigned char resident = 0;
	if (mincore(reinterpret_cast<void *>(start), 1, &resident) != 0)
		return true; /* unknown: assume the cheaper case */
	return (resident & 1) != 0;
}

uint64_t
major_faults()
{
	struct rusage usage;
	if (getrusage(RUSAGE_THREAD, &usage) != 0)
		return 0;
	return static_cast<uint64_t>(usage.ru_majflt);
}

void
ColdReads::after_step(uint64_t waited)
{
	if (state_ == State::Cold && waited == 0)
		state_ = State::Warm;
	else if (state_ != State::Cold && waited > kColdFaults)
		state_ = State::Cold;
}

} // namespace hannoy
