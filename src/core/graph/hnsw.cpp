/*
 * hnsw.cpp: level draw.
 */
#include "hnsw.hpp"

#include "../pure_cpp.hpp"

namespace hannoy
{

/* splitmix64's finaliser: a fast, well-mixed 64-bit hash. */
uint64_t
mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint8_t
draw_level(uint64_t seed, uint32_t id, uint32_t m)
{
	uint64_t bits = mix64(seed ^ mix64(id));
	/* Uniform in (0, 1]: never 0, so the logarithm stays finite. */
	double u = (static_cast<double>(bits >> 11) + 1.0) / 9007199254740992.0;
	double level = -std::log(u) / std::log(static_cast<double>(m));
	if (level >= kMaxLevel)
		return kMaxLevel;
	return static_cast<uint8_t>(level);
}

} // namespace hannoy
