/*
 * residency_test.cpp: page residency checks and the cold/warm decisions of searches.
 */
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vector>

#include "core/store/residency.hpp"
#include "test_util.hpp"

namespace hannoy
{
namespace
{

/* A file extended without writing holds no page in memory until something reads it. */
struct SparseMapping {
	explicit SparseMapping(const std::string &path, size_t bytes) : size(bytes)
	{
		fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
		EXPECT_GE(fd, 0);
		EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(bytes)), 0);
		data = static_cast<const uint8_t *>(::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0));
		EXPECT_NE(data, MAP_FAILED);
	}
	~SparseMapping()
	{
		::munmap(const_cast<uint8_t *>(data), size);
		::close(fd);
	}
	int fd;
	size_t size;
	const uint8_t *data;
};

TEST(Residency, TouchedPagesAreResident)
{
	std::vector<uint8_t> memory(1 << 16, 1);
	EXPECT_TRUE(is_resident(memory.data() + 12345));
	test::TempPath tmp;
	SparseMapping file(tmp.path(), 1 << 20);
	EXPECT_FALSE(is_resident(file.data + 5 * 4096 + 17));
	volatile uint8_t touched = file.data[5 * 4096];
	(void)touched;
	EXPECT_TRUE(is_resident(file.data + 5 * 4096 + 17));
	/* Advice on unaligned ranges, up to the end of the mapping, is harmless. */
	read_ahead(file.data + 100, 3000);
	read_ahead(file.data + file.size - 10, 10);
}

TEST(Residency, FileResidentBytesCountsThePagesInMemory)
{
	const int64_t page = sysconf(_SC_PAGESIZE);
	test::TempPath tmp;
	/* The last page is partly beyond the end of the file and counts in full. */
	SparseMapping file(tmp.path(), (1 << 20) + 100);
	EXPECT_EQ(file_resident_bytes(tmp.path().c_str()), 0);
	/* No read-around on faults: each touch brings in its own page only. */
	ASSERT_EQ(::madvise(const_cast<uint8_t *>(file.data), file.size, MADV_RANDOM), 0);
	for (size_t offset : {size_t(0), size_t(7 * page), size_t(1 << 20)}) {
		volatile uint8_t touched = file.data[offset];
		(void)touched;
	}
	EXPECT_EQ(file_resident_bytes(tmp.path().c_str()), 3 * page);
	/* Asking maps the file without reading it. */
	EXPECT_EQ(file_resident_bytes(tmp.path().c_str()), 3 * page);

	test::TempPath empty;
	int fd = ::open(empty.path().c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
	ASSERT_GE(fd, 0);
	::close(fd);
	EXPECT_EQ(file_resident_bytes(empty.path().c_str()), 0);
	EXPECT_EQ(file_resident_bytes((tmp.path() + "-missing").c_str()), -1);
}

TEST(Residency, ColdReadsFollowTheProbeAndTheFaults)
{
	test::TempPath tmp;
	SparseMapping file(tmp.path(), 1 << 20);
	std::vector<uint8_t> memory(4096, 1);

	ColdReads warm;
	warm.probe(memory.data());
	EXPECT_FALSE(warm.active());
	warm.probe(file.data); /* only the first probe decides */
	EXPECT_FALSE(warm.active());
	warm.after_step(ColdReads::kColdFaults);
	EXPECT_FALSE(warm.active()) << "a few disk reads do not make a file cold";
	warm.after_step(ColdReads::kColdFaults + 1);
	EXPECT_TRUE(warm.active());
	warm.after_step(3);
	EXPECT_TRUE(warm.active()) << "still waiting for reads: stays cold";
	warm.after_step(0);
	EXPECT_FALSE(warm.active());

	ColdReads cold;
	cold.probe(file.data + 64 * 4096);
	EXPECT_TRUE(cold.active());
	{
		ColdReads::Step step(cold); /* no disk read happens in this step */
	}
	EXPECT_FALSE(cold.active());
}

} // namespace
} // namespace hannoy
