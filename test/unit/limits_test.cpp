/*
 * limits_test.cpp: the index file at its limits: the map size bound, descriptor accounting
 * and a full disk. Each limit must give a clear error and leave what was committed intact.
 */
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.hpp"
#include "test_util.hpp"

namespace hannoy
{
namespace
{

IndexMeta
meta_for(uint32_t dims)
{
	IndexMeta meta;
	meta.params.metric = Metric::L2;
	meta.params.dims = dims;
	meta.level_seed = 7;
	return meta;
}

/* Writes vectors first .. first + count - 1 of 256 dimensions, element 0 = id. */
void
write_vectors(IndexStore &store, uint32_t first, uint32_t count)
{
	std::vector<float> v(256, 0.25f);
	lmdb::run_write(store.env(), [&](lmdb::Txn &txn) {
		StoreWriter w(store, txn);
		for (uint32_t id = first; id < first + count; id++) {
			v[0] = static_cast<float>(id);
			w.put_vector(id, v.data());
		}
		IndexMeta meta = w.meta();
		meta.next_item = first + count;
		meta.seq++;
		w.put_meta(meta);
	});
}

/* One write of a vector that bumps the change counter. */
void
write_vectors_of(IndexStore &store, uint32_t dims)
{
	std::vector<float> v(dims, 1.0f);
	lmdb::run_write(store.env(), [&](lmdb::Txn &txn) {
		StoreWriter w(store, txn);
		w.put_vector(0, v.data());
		IndexMeta meta = w.meta();
		meta.seq++;
		w.put_meta(meta);
	});
}

/* Checks that exactly vectors 0 .. next_item - 1 exist with their ids; returns next_item. */
uint32_t
check_vectors(IndexStore &store)
{
	lmdb::Txn txn(store.env(), true);
	StoreReader r(store, txn);
	IndexMeta meta = r.meta();
	for (uint32_t id = 0; id < meta.next_item; id++) {
		std::vector<float> v = test::stored_floats(r, id);
		EXPECT_FALSE(v.empty()) << id;
		if (v.empty())
			break;
		EXPECT_EQ(v[0], static_cast<float>(id));
	}
	return meta.next_item;
}

TEST(Limits, MapSizeBoundGivesClearErrorAndKeepsCommittedData)
{
	test::TempPath tmp;
	IndexStore::Options bounded;
	bounded.max_map_size = size_t(2) << 20;
	uint32_t committed = 0;
	{
		auto store = IndexStore::create(tmp.path(), meta_for(256), bounded);
		store->finish_build();
		EXPECT_EQ(store->env().map_size(), bounded.max_map_size) << "the first map stays within the bound";
		try {
			for (;; committed += 100)
				write_vectors(*store, committed, 100);
		} catch (const Error &e) {
			EXPECT_EQ(e.code(), ErrorCode::StorageFull);
			EXPECT_NE(std::string(e.what()).find("reached its maximum size"), std::string::npos) << e.what();
			EXPECT_NE(e.hint().find("hannoy.max_index_size"), std::string::npos) << e.hint();
		}
		EXPECT_GT(committed, 0u);
		EXPECT_EQ(check_vectors(*store), committed);
	}
	/* Reopened with a larger bound, the file has everything committed and grows again. */
	auto store = IndexStore::open(tmp.path(), IndexStore::Options());
	EXPECT_EQ(check_vectors(*store), committed);
	write_vectors(*store, committed, 2000);
	EXPECT_EQ(check_vectors(*store), committed + 2000);
	EXPECT_GT(store->env().map_size(), bounded.max_map_size);
}

/* A descriptor budget for the accounting hooks. */
int fds_in_use = 0;
int fd_budget = 0;
std::vector<std::unique_ptr<IndexStore>> *idle_stores = nullptr;

TEST(Limits, DescriptorsAreCountedAndIdleFilesClosed)
{
	test::TempPath a, b, c;
	for (auto *path : {&a, &b, &c})
		IndexStore::create(path->path(), meta_for(4), IndexStore::Options())->finish_build();

	lmdb::FdAccounting accounting;
	accounting.acquire = [] { return fds_in_use < fd_budget ? (fds_in_use++, true) : false; };
	accounting.release = [] { fds_in_use--; };
	lmdb::set_fd_accounting(accounting);
	fd_budget = 2 * lmdb::kFdsPerEnv + 1;
	std::vector<std::unique_ptr<IndexStore>> open;
	open.push_back(IndexStore::open(a.path(), IndexStore::Options()));
	open.push_back(IndexStore::open(b.path(), IndexStore::Options()));
	EXPECT_EQ(fds_in_use, 2 * lmdb::kFdsPerEnv);
	try {
		IndexStore::open(c.path(), IndexStore::Options());
		ADD_FAILURE() << "a third file fits in a budget of two";
	} catch (const lmdb::FdLimitError &e) {
		EXPECT_EQ(e.code(), ErrorCode::LimitExceeded);
		EXPECT_NE(e.hint().find("max_files_per_process"), std::string::npos) << e.hint();
	}
	EXPECT_EQ(fds_in_use, 2 * lmdb::kFdsPerEnv) << "a failed open gives back what it reserved";

	/* With a way to close idle files, the open succeeds by closing one. */
	idle_stores = &open;
	accounting.make_room = [] {
		if (idle_stores->empty())
			return false;
		idle_stores->erase(idle_stores->begin());
		return true;
	};
	lmdb::set_fd_accounting(accounting);
	auto third = IndexStore::open(c.path(), IndexStore::Options());
	EXPECT_EQ(open.size(), 1u);
	EXPECT_EQ(fds_in_use, 2 * lmdb::kFdsPerEnv);
	third.reset();
	open.clear();
	EXPECT_EQ(fds_in_use, 0) << "closing files gives their descriptors back";
	lmdb::set_fd_accounting(lmdb::FdAccounting());
	idle_stores = nullptr;
}

/* A full disk, simulated in a child process by the file size limit: LMDB's writes past it
 * fail (EFBIG, or EIO for a write cut short), as on a file system that fills up. */
TEST(Limits, FullDiskGivesClearErrorAndKeepsCommittedData)
{
	test::TempPath tmp;
	{
		auto store = IndexStore::create(tmp.path(), meta_for(256), IndexStore::Options());
		store->finish_build();
		write_vectors(*store, 0, 500);
	}
	struct stat st;
	ASSERT_EQ(::stat(tmp.path().c_str(), &st), 0);
	pid_t child = ::fork();
	ASSERT_GE(child, 0);
	if (child == 0) {
		::signal(SIGXFSZ, SIG_IGN);
		struct rlimit limit;
		limit.rlim_cur = limit.rlim_max = static_cast<rlim_t>(st.st_size) + 65536;
		::setrlimit(RLIMIT_FSIZE, &limit);
		int status = 1;
		try {
			auto store = IndexStore::open(tmp.path(), IndexStore::Options());
			for (uint32_t first = 500; first < 100000; first += 100)
				write_vectors(*store, first, 100);
		} catch (const Error &e) {
			std::string message = e.what();
			bool clear = message.find("could not write hannoy index file") != std::string::npos &&
						 e.hint().find("Free disk space") != std::string::npos;
			status = clear ? 0 : 2;
			if (!clear)
				fprintf(stderr, "unexpected error: %s (hint: %s)\n", message.c_str(), e.hint().c_str());
		}
		::_exit(status);
	}
	int status = 0;
	ASSERT_EQ(::waitpid(child, &status, 0), child);
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(WEXITSTATUS(status), 0) << "the write past the limit failed with a clear error";

	auto store = IndexStore::open(tmp.path(), IndexStore::Options());
	uint32_t committed = check_vectors(*store);
	EXPECT_GE(committed, 500u);
	write_vectors(*store, committed, 1000);
	EXPECT_EQ(check_vectors(*store), committed + 1000) << "with space again, writes work";
}

/* The host's timeline is stamped into the meta record by every write of a handle that has
 * one, and kept by handles that do not. */
TEST(Limits, WritesStampTheTimeline)
{
	test::TempPath tmp;
	IndexStore::Options on_timeline_3;
	on_timeline_3.timeline = 3;
	{
		auto store = IndexStore::create(tmp.path(), meta_for(4), on_timeline_3);
		store->finish_build();
		EXPECT_EQ(store->cached_meta().timeline, 3);
	}
	{
		auto store = IndexStore::open(tmp.path(), IndexStore::Options());
		EXPECT_EQ(store->cached_meta().timeline, 3);
		write_vectors_of(*store, 4);
		EXPECT_EQ(store->cached_meta().timeline, 3) << "a handle without a timeline keeps the recorded one";
	}
	IndexStore::Options on_timeline_4;
	on_timeline_4.timeline = 4;
	{
		auto store = IndexStore::open(tmp.path(), on_timeline_4);
		write_vectors_of(*store, 4);
	}
	auto store = IndexStore::open(tmp.path(), IndexStore::Options());
	EXPECT_EQ(store->cached_meta().timeline, 4);
	EXPECT_EQ(store->cached_meta().seq, 2u);
}

} // namespace
} // namespace hannoy
