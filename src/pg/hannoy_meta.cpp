/*
 * hannoy_meta.cpp: the metapage, the index relation's only page.
 *
 * The relation is WAL-logged like any other, so the metapage is the durable, replicated
 * record of which storage file belongs to the index; the file itself is checked against it.
 */
#include "hannoy.hpp"

#include <algorithm>

namespace hannoy::pg
{

namespace
{

void
fill_page(Page page, const Metapage &meta)
{
	PageInit(page, BLCKSZ, 0);
	memcpy(PageGetContents(page), &meta, sizeof(Metapage));
	/* pd_lower past the data, so full-page images do not treat it as a hole. */
	reinterpret_cast<PageHeader>(page)->pd_lower =
		static_cast<LocationIndex>((reinterpret_cast<char *>(PageGetContents(page)) + sizeof(Metapage)) -
								   reinterpret_cast<char *>(page));
}

} // namespace

void
write_metapage(Relation index, ForkNumber fork, const Metapage &meta)
{
	if (fork == INIT_FORKNUM) {
		/* The init fork is written directly and synced, like PostgreSQL's own AMs do. */
		Page page = static_cast<Page>(palloc(BLCKSZ));
		fill_page(page, meta);
		PageSetChecksumInplace(page, kMetapageBlock);
		smgrwrite(RelationGetSmgr(index), INIT_FORKNUM, kMetapageBlock, reinterpret_cast<char *>(page), true);
		log_newpage(&RelationGetSmgr(index)->smgr_rnode.node, INIT_FORKNUM, kMetapageBlock, page, true);
		smgrimmedsync(RelationGetSmgr(index), INIT_FORKNUM);
		pfree(page);
		return;
	}
	Buffer buffer;
	if (RelationGetNumberOfBlocks(index) == 0)
		buffer = ReadBufferExtended(index, fork, P_NEW, RBM_NORMAL, nullptr);
	else
		buffer = ReadBufferExtended(index, fork, kMetapageBlock, RBM_NORMAL, nullptr);
	LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
	if (BufferGetBlockNumber(buffer) != kMetapageBlock)
		elog(ERROR, "hannoy metapage of \"%s\" is not in block 0", RelationGetRelationName(index));
	START_CRIT_SECTION();
	fill_page(BufferGetPage(buffer), meta);
	MarkBufferDirty(buffer);
	if (RelationNeedsWAL(index))
		log_newpage_buffer(buffer, true);
	END_CRIT_SECTION();
	UnlockReleaseBuffer(buffer);
	if (index->rd_amcache != nullptr) {
		pfree(index->rd_amcache);
		index->rd_amcache = nullptr;
	}
}

void
advance_metapage_seq(Relation index, uint64 seq)
{
	Buffer buffer = ReadBuffer(index, kMetapageBlock);
	LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
	Metapage meta;
	memcpy(&meta, PageGetContents(BufferGetPage(buffer)), sizeof(Metapage));
	if (meta.magic == kMetapageMagic && meta.seq < seq) {
		/* A generic record holds only the changed bytes (a full image after a checkpoint). */
		GenericXLogState *state = GenericXLogStart(index);
		Page page = GenericXLogRegisterBuffer(state, buffer, 0);
		meta.seq = seq;
		/* Also sets pd_lower past the whole struct: bytes beyond it would not be logged. */
		fill_page(page, meta);
		GenericXLogFinish(state);
	}
	UnlockReleaseBuffer(buffer);
	if (index->rd_amcache != nullptr)
		static_cast<Metapage *>(index->rd_amcache)->seq = std::max(meta.seq, seq);
}

Metapage
read_metapage(Relation index)
{
	if (index->rd_amcache != nullptr)
		return *static_cast<Metapage *>(index->rd_amcache);
	if (RelationGetNumberOfBlocks(index) == 0)
		ereport(ERROR, (errcode(ERRCODE_INDEX_CORRUPTED),
						errmsg("hannoy index \"%s\" has no metapage", RelationGetRelationName(index)),
						errhint("REINDEX the index.")));
	Buffer buffer = ReadBuffer(index, kMetapageBlock);
	LockBuffer(buffer, BUFFER_LOCK_SHARE);
	Metapage meta;
	memcpy(&meta, PageGetContents(BufferGetPage(buffer)), sizeof(Metapage));
	UnlockReleaseBuffer(buffer);
	if (meta.magic != kMetapageMagic)
		ereport(ERROR, (errcode(ERRCODE_INDEX_CORRUPTED),
						errmsg("\"%s\" is not a hannoy index", RelationGetRelationName(index))));
	if (meta.version != kMetapageVersion)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("hannoy index \"%s\" has metapage version %u, this build reads version %u",
							   RelationGetRelationName(index), meta.version, kMetapageVersion),
						errhint("REINDEX the index.")));
	void *cache = MemoryContextAlloc(index->rd_indexcxt, sizeof(Metapage));
	memcpy(cache, &meta, sizeof(Metapage));
	index->rd_amcache = cache;
	return meta;
}

} // namespace hannoy::pg
