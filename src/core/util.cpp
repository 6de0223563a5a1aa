/*
 * util.cpp: small helpers shared by the core (string formatting).
 */
#include <cstdarg>
#include <cstdio>

#include "error.hpp"

#include "pure_cpp.hpp"

namespace hannoy
{

std::string
format(const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	va_list copy;
	va_copy(copy, args);
	int needed = std::vsnprintf(nullptr, 0, fmt, copy);
	va_end(copy);
	std::string out;
	if (needed > 0) {
		out.resize(static_cast<size_t>(needed) + 1);
		std::vsnprintf(out.data(), out.size(), fmt, args);
		out.resize(static_cast<size_t>(needed));
	}
	va_end(args);
	return out;
}

} // namespace hannoy
