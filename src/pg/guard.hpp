/*
 * guard.hpp: the one boundary between C++ exceptions and PostgreSQL's ereport/longjmp.
 *
 * Two rules keep the two error models apart:
 *  1. Every entry point PostgreSQL calls (AM callbacks, SQL functions, hooks) runs its body
 *     through hannoy_guarded(). A C++ exception is caught there, its text copied into plain
 *     buffers, every C++ destructor has run by the time ereport() is called.
 *  2. Inside guarded code, every PostgreSQL call that may raise an error goes through
 *     pg_call(). Its PG_TRY turns the ERROR into a PgError exception carrying the original
 *     ErrorData, which the entry point re-throws unchanged (SQLSTATE, hint, position), so a
 *     query cancel stays a query cancel.
 * Because errors always travel as exceptions through C++ frames, no longjmp skips a
 * destructor, and an open LMDB write transaction is always aborted (releasing LMDB's writer
 * mutex) before the error reaches PostgreSQL.
 */
#pragma once

#include "postgres_headers.hpp"

#include <exception>
#include <new>
#include <type_traits>

#include "core/error.hpp"

namespace hannoy::pg
{

/// A PostgreSQL error caught by pg_call(), travelling as a C++ exception.
class PgError : public std::exception
{
public:
	explicit PgError(ErrorData *edata) : edata_(edata) {}
	ErrorData *edata() const { return edata_; }
	const char *what() const noexcept override
	{
		return edata_ && edata_->message ? edata_->message : "error";
	}

private:
	ErrorData *edata_;
};

/// Plain-data copy of a C++ exception, so it can be reported after the exception is gone.
struct CaughtError {
	int sqlstate = 0;
	char message[1024] = {0};
	char detail[1024] = {0};
	char hint[512] = {0};
	ErrorData *pg_error = nullptr;
};

/// SQLSTATE for a core error code.
int sqlstate_for(ErrorCode code);
/// Fills `out` from the exception being handled. Never throws, never calls PostgreSQL.
void capture_current_exception(CaughtError *out) noexcept;
/// Raises the captured error with ereport(ERROR) (or re-throws the PostgreSQL error).
[[noreturn]] void raise_caught(const CaughtError &error);

/// Runs `fn`, a piece of PostgreSQL code that may ereport(ERROR), and converts such an
/// error into a PgError exception. `fn` must not own objects with destructors.
template <typename Fn>
void
pg_call_void(Fn &&fn)
{
	MemoryContext caller_context = CurrentMemoryContext;
	ErrorData *volatile caught = nullptr;
	PG_TRY();
	{
		fn();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller_context);
		caught = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();
	if (caught != nullptr)
		throw PgError(caught);
}

/// pg_call_void() for code that returns a value. The value lives in this frame, not in the
/// frame that calls sigsetjmp, so a longjmp cannot clobber it.
template <typename Fn>
auto
pg_call(Fn &&fn) -> decltype(fn())
{
	using Result = decltype(fn());
	if constexpr (std::is_void_v<Result>) {
		pg_call_void(fn);
	} else {
		Result result{};
		pg_call_void([&] { result = fn(); });
		return result;
	}
}

/// Checks for query cancel and friends; throws PgError when one is pending.
inline void
check_interrupts()
{
	if (INTERRUPTS_PENDING_CONDITION())
		pg_call([] { CHECK_FOR_INTERRUPTS(); });
}

/// Runs the body of a PostgreSQL entry point; C++ exceptions become ERRORs after every
/// destructor inside `fn` has run.
template <typename Fn>
auto
hannoy_guarded(Fn &&fn) -> decltype(fn())
{
	CaughtError error;
	try {
		return fn();
	} catch (...) {
		capture_current_exception(&error);
	}
	raise_caught(error);
}

} // namespace hannoy::pg
