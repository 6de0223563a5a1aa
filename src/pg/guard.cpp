/*
 * guard.cpp: conversion of core errors and C++ exceptions into PostgreSQL errors.
 */
#include "guard.hpp"

#include <cstring>

namespace hannoy::pg
{

namespace
{

void
copy_text(char *dest, size_t size, const char *src)
{
	if (src == nullptr) {
		dest[0] = '\0';
		return;
	}
	std::strncpy(dest, src, size - 1);
	dest[size - 1] = '\0';
}

} // namespace

int
sqlstate_for(ErrorCode code)
{
	switch (code) {
	case ErrorCode::InvalidInput:
	case ErrorCode::DimensionMismatch:
		return ERRCODE_DATA_EXCEPTION;
	case ErrorCode::Corrupted:
		return ERRCODE_INDEX_CORRUPTED;
	case ErrorCode::Storage:
		return ERRCODE_IO_ERROR;
	case ErrorCode::StorageFull:
		return ERRCODE_DISK_FULL;
	case ErrorCode::Unavailable:
		return ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
	case ErrorCode::Cancelled:
		return ERRCODE_QUERY_CANCELED;
	case ErrorCode::LimitExceeded:
		return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
	case ErrorCode::Internal:
		return ERRCODE_INTERNAL_ERROR;
	}
	return ERRCODE_INTERNAL_ERROR;
}

void
capture_current_exception(CaughtError *out) noexcept
{
	try {
		throw;
	} catch (const PgError &e) {
		out->pg_error = e.edata();
	} catch (const Error &e) {
		out->sqlstate = sqlstate_for(e.code());
		copy_text(out->message, sizeof(out->message), e.what());
		copy_text(out->detail, sizeof(out->detail), e.detail().c_str());
		copy_text(out->hint, sizeof(out->hint), e.hint().c_str());
	} catch (const std::bad_alloc &) {
		out->sqlstate = ERRCODE_OUT_OF_MEMORY;
		copy_text(out->message, sizeof(out->message), "out of memory in hannoy");
	} catch (const std::exception &e) {
		out->sqlstate = ERRCODE_INTERNAL_ERROR;
		copy_text(out->message, sizeof(out->message), e.what());
	} catch (...) {
		out->sqlstate = ERRCODE_INTERNAL_ERROR;
		copy_text(out->message, sizeof(out->message), "unknown C++ exception in hannoy");
	}
}

void
raise_caught(const CaughtError &error)
{
	if (error.pg_error != nullptr)
		ReThrowError(error.pg_error);
	ereport(ERROR, (errcode(error.sqlstate), errmsg_internal("%s", error.message),
					error.detail[0] ? errdetail_internal("%s", error.detail) : 0,
					error.hint[0] ? errhint("%s", error.hint) : 0));
	pg_unreachable();
}

} // namespace hannoy::pg
