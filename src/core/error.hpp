/*
 * error.hpp: the one exception type of the core.
 *
 * The core reports failures by throwing hannoy::Error. The PostgreSQL glue catches it at
 * its entry points (src/pg/guard.hpp) and turns the code into an SQLSTATE; nothing in the
 * core knows about SQLSTATEs.
 */
#pragma once

#include <stdexcept>
#include <string>

namespace hannoy
{

/// What went wrong, coarse enough for the glue to pick an SQLSTATE.
enum class ErrorCode {
	InvalidInput,      ///< bad vector or parameter supplied by the user
	DimensionMismatch, ///< vector dimension differs from the index's
	Corrupted,         ///< stored data fails validation: the index must be rebuilt
	Storage,           ///< LMDB or file-system failure
	StorageFull,       ///< LMDB map full and it could not grow, or disk full
	Unavailable,       ///< storage missing, foreign or stale: the index cannot answer
	Cancelled,         ///< a cancel callback asked the core to stop
	LimitExceeded,     ///< an internal limit (item ids, levels) was reached
	Internal,          ///< a bug: an invariant did not hold
};

/// Exception carrying a code, a PostgreSQL-style message (lower case, no period),
/// and optional detail and hint sentences.
class Error : public std::runtime_error
{
public:
	Error(ErrorCode code, std::string message, std::string detail = {}, std::string hint = {})
		: std::runtime_error(message), code_(code), detail_(std::move(detail)), hint_(std::move(hint))
	{
	}

	ErrorCode code() const noexcept { return code_; }
	const std::string &detail() const noexcept { return detail_; }
	const std::string &hint() const noexcept { return hint_; }

private:
	ErrorCode code_;
	std::string detail_;
	std::string hint_;
};

/// Formats like snprintf into a std::string (the core never uses PostgreSQL's psprintf).
std::string format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

} // namespace hannoy
