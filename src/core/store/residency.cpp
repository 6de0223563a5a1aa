#include "core/store/residency.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

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

int64_t
file_resident_bytes(const char *path)
{
	int fd = ::open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	if (::fstat(fd, &st) != 0) {
		::close(fd);
		return -1;
	}
	if (st.st_size == 0) {
		::close(fd);
		return 0;
	}
	size_t length = static_cast<size_t>(st.st_size);
	void *map = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, fd, 0);
	::close(fd);
	if (map == MAP_FAILED)
		return -1;
	/* One byte per page; asked in slices so that a large file needs no large vector. */
	constexpr size_t kSlicePages = size_t(1) << 16;
	std::vector<unsigned char> resident(kSlicePages);
	size_t pages = (length + page_size() - 1) / page_size();
	int64_t bytes = 0;
	for (size_t first = 0; first < pages; first += kSlicePages) {
		size_t count = std::min(kSlicePages, pages - first);
		/* The mapping covers the last page whole, so whole pages can be asked for. */
		char *start = static_cast<char *>(map) + first * page_size();
		if (mincore(start, count * page_size(), resident.data()) != 0) {
			bytes = -1;
			break;
		}
		for (size_t i = 0; i < count; i++)
			bytes += (resident[i] & 1) ? static_cast<int64_t>(page_size()) : 0;
	}
	::munmap(map, length);
	return bytes;
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
