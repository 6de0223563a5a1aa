/*
 * kernels_scalar.cpp: the portable distance kernels, built for the baseline instruction set.
 *
 * Always available, so it is the fallback on any CPU and the yardstick the SIMD tables are
 * tested against. Written so the compiler can keep several independent sums in flight.
 */
#include "kernels.hpp"

#include <cmath>
#include <cstring>

#include "../pure_cpp.hpp"

namespace hannoy::simd
{

namespace
{

/// Independent partial sums per loop step: enough to hide the add latency and to let the
/// compiler map them onto vector lanes of the baseline ISA.
constexpr size_t lanes = 8;

/// sum(term(a[i], b[i])) with `lanes` partial sums combined pairwise at the end.
/// Elements may be floats or bytes (Encoding::U8): a byte converts exactly to the float it
/// encodes, so the sum is the same either way.
template <class A, class B, class Term>
inline float
sum_terms(const A *a, const B *b, size_t n, Term term)
{
	float acc[lanes] = {};
	size_t i = 0;
	for (; i + lanes <= n; i += lanes)
		for (size_t j = 0; j < lanes; j++)
			acc[j] += term(static_cast<float>(a[i + j]), static_cast<float>(b[i + j]));

	float tail = 0.0f;
	for (; i < n; i++)
		tail += term(static_cast<float>(a[i]), static_cast<float>(b[i]));

	return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

inline float
l2_term(float x, float y)
{
	float d = x - y;
	return d * d;
}

inline float
dot_term(float x, float y)
{
	return x * y;
}

inline float
l1_term(float x, float y)
{
	return std::fabs(x - y);
}

template <class A, class B>
float
l2_squared(const A *a, const B *b, size_t n)
{
	return sum_terms(a, b, n, l2_term);
}

template <class A, class B>
float
dot(const A *a, const B *b, size_t n)
{
	return sum_terms(a, b, n, dot_term);
}

template <class A, class B>
float
l1(const A *a, const B *b, size_t n)
{
	return sum_terms(a, b, n, l1_term);
}

/// Loads a word from a byte pointer of any alignment.
inline uint64_t
load_u64(const uint8_t *p)
{
	uint64_t w;
	std::memcpy(&w, p, sizeof w);
	return w;
}

uint64_t
hamming(const uint8_t *a, const uint8_t *b, size_t nbytes)
{
	uint64_t c0 = 0, c1 = 0;
	size_t i = 0;
	for (; i + 16 <= nbytes; i += 16) {
		c0 += static_cast<uint64_t>(__builtin_popcountll(load_u64(a + i) ^ load_u64(b + i)));
		c1 += static_cast<uint64_t>(__builtin_popcountll(load_u64(a + i + 8) ^ load_u64(b + i + 8)));
	}
	if (i + 8 <= nbytes) {
		c0 += static_cast<uint64_t>(__builtin_popcountll(load_u64(a + i) ^ load_u64(b + i)));
		i += 8;
	}
	for (; i < nbytes; i++)
		c1 += static_cast<uint64_t>(__builtin_popcount(static_cast<unsigned>(a[i] ^ b[i])));
	return c0 + c1;
}

constexpr Kernels table = {l2_squared<float, float>,
						   dot<float, float>,
						   l1<float, float>,
						   hamming,
						   l2_squared<float, uint8_t>,
						   dot<float, uint8_t>,
						   l1<float, uint8_t>,
						   l2_squared<uint8_t, uint8_t>,
						   dot<uint8_t, uint8_t>,
						   l1<uint8_t, uint8_t>,
						   "scalar"};

} // namespace

const Kernels &
scalar_kernels()
{
	return table;
}

} // namespace hannoy::simd
