/*
 * kernels_avx512.cpp: the AVX-512 distance kernels (F, BW, VL, VPOPCNTDQ).
 *
 * Built with the AVX-512 flags, so nothing here may run before avx512_kernels() has checked
 * the CPU. Everything except that function has internal linkage: an inline function emitted
 * here with AVX-512 code must never be picked by the linker for the portable build.
 */
#include "kernels.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VPOPCNTDQ__)
#include <immintrin.h>
#define HANNOY_HAVE_AVX512 1
#endif

#include "../pure_cpp.hpp"

namespace hannoy::simd
{

#ifdef HANNOY_HAVE_AVX512

namespace
{

/// Per-metric accumulation step: acc + term(x, y) lane-wise. Zero inputs give zero terms,
/// which is what lets the masked tail load zeros past the end.
struct L2Step {
	static __m512 step(__m512 acc, __m512 x, __m512 y)
	{
		__m512 d = _mm512_sub_ps(x, y);
		return _mm512_fmadd_ps(d, d, acc);
	}
};

struct DotStep {
	static __m512 step(__m512 acc, __m512 x, __m512 y) { return _mm512_fmadd_ps(x, y, acc); }
};

struct L1Step {
	static __m512 step(__m512 acc, __m512 x, __m512 y)
	{
		return _mm512_add_ps(acc, _mm512_abs_ps(_mm512_sub_ps(x, y)));
	}
};

/*
 * Horizontal sums fold 512 -> 256 -> 128 bits. The 512-bit halves are split with
 * __builtin_shufflevector because g++ 12's _mm512_reduce_add_*, _mm512_cast*512*256 and
 * _mm512_shuffle_* trip -Wuninitialized inside its own headers (GCC bug 105593).
 */
inline float
horizontal_sum(__m512 v)
{
	__m256 low = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
	__m256 high = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
	__m256 s8 = _mm256_add_ps(low, high);
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

inline uint64_t
horizontal_sum(__m512i v)
{
	__m256i low = __builtin_shufflevector(v, v, 0, 1, 2, 3);
	__m256i high = __builtin_shufflevector(v, v, 4, 5, 6, 7);
	__m256i s4 = _mm256_add_epi64(low, high);
	__m128i s = _mm_add_epi64(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
	s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
	return static_cast<uint64_t>(_mm_cvtsi128_si64(s));
}

/// Loads 16 lanes as floats from float storage.
struct FloatLoad {
	using Element = float;
	static __m512 load(const float *p) { return _mm512_loadu_ps(p); }
	static __m512 load_first(__mmask16 mask, const float *p) { return _mm512_maskz_loadu_ps(mask, p); }
};

/// Loads 16 lanes as floats from one byte per element (Encoding::U8): the same values as the
/// floats they encode, so sums over them are bit for bit those over the floats.
/// (The zero-masking conversions stand in for the plain ones, whose g++ 12 headers trip
/// -Wmaybe-uninitialized: same instructions, all lanes enabled.)
struct ByteLoad {
	using Element = uint8_t;
	static __m512 widen(__m128i bytes)
	{
		constexpr __mmask16 all = 0xffff;
		return _mm512_maskz_cvtepi32_ps(all, _mm512_maskz_cvtepu8_epi32(all, bytes));
	}
	static __m512 load(const uint8_t *p)
	{
		return widen(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
	}
	static __m512 load_first(__mmask16 mask, const uint8_t *p)
	{
		return widen(_mm_maskz_loadu_epi8(mask, p));
	}
};

/// sum(term(a[i], b[i])) with four independent 16-lane accumulators; the 0..63 leftover floats
/// use up to three full steps and one masked step, so no scalar loop remains. The summation
/// order depends only on n, never on addresses or on how the elements are stored, so results
/// are reproducible; callers keep float vectors 64-byte aligned (see codec.hpp) because loads
/// crossing cache lines cost twice.
template <class Op, class A = FloatLoad, class B = FloatLoad>
inline float
sum_terms(const typename A::Element *a, const typename B::Element *b, size_t n)
{
	__m512 acc0 = _mm512_setzero_ps();
	__m512 acc1 = _mm512_setzero_ps();
	__m512 acc2 = _mm512_setzero_ps();
	__m512 acc3 = _mm512_setzero_ps();
	size_t i = 0;
	for (; i + 64 <= n; i += 64) {
		acc0 = Op::step(acc0, A::load(a + i), B::load(b + i));
		acc1 = Op::step(acc1, A::load(a + i + 16), B::load(b + i + 16));
		acc2 = Op::step(acc2, A::load(a + i + 32), B::load(b + i + 32));
		acc3 = Op::step(acc3, A::load(a + i + 48), B::load(b + i + 48));
	}
	if (i + 32 <= n) {
		acc0 = Op::step(acc0, A::load(a + i), B::load(b + i));
		acc1 = Op::step(acc1, A::load(a + i + 16), B::load(b + i + 16));
		i += 32;
	}
	if (i + 16 <= n) {
		acc2 = Op::step(acc2, A::load(a + i), B::load(b + i));
		i += 16;
	}
	if (i < n) {
		__mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
		acc3 = Op::step(acc3, A::load_first(mask, a + i), B::load_first(mask, b + i));
	}
	return horizontal_sum(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

inline __m512i
popcount_xor(__m512i x, __m512i y)
{
	return _mm512_popcnt_epi64(_mm512_xor_si512(x, y));
}

/// Bit counts per 64-bit lane in two accumulators, 128 bytes per step; the 0..127 leftover
/// bytes use at most one full and one masked 64-byte step.
uint64_t
hamming(const uint8_t *a, const uint8_t *b, size_t nbytes)
{
	__m512i acc0 = _mm512_setzero_si512();
	__m512i acc1 = _mm512_setzero_si512();
	size_t i = 0;
	for (; i + 128 <= nbytes; i += 128) {
		acc0 = _mm512_add_epi64(acc0, popcount_xor(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i)));
		acc1 = _mm512_add_epi64(acc1,
								popcount_xor(_mm512_loadu_si512(a + i + 64), _mm512_loadu_si512(b + i + 64)));
	}
	if (i + 64 <= nbytes) {
		acc0 = _mm512_add_epi64(acc0, popcount_xor(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i)));
		i += 64;
	}
	if (i < nbytes) {
		__mmask64 mask = (1ull << (nbytes - i)) - 1;
		acc1 = _mm512_add_epi64(
			acc1, popcount_xor(_mm512_maskz_loadu_epi8(mask, a + i), _mm512_maskz_loadu_epi8(mask, b + i)));
	}
	return horizontal_sum(_mm512_add_epi64(acc0, acc1));
}

/* Each entry is one instantiation of sum_terms: the byte variants are the float kernels with
 * another loader, so they cannot drift apart. */
constexpr Kernels table = {sum_terms<L2Step>,
						   sum_terms<DotStep>,
						   sum_terms<L1Step>,
						   hamming,
						   sum_terms<L2Step, FloatLoad, ByteLoad>,
						   sum_terms<DotStep, FloatLoad, ByteLoad>,
						   sum_terms<L1Step, FloatLoad, ByteLoad>,
						   sum_terms<L2Step, ByteLoad, ByteLoad>,
						   sum_terms<DotStep, ByteLoad, ByteLoad>,
						   sum_terms<L1Step, ByteLoad, ByteLoad>,
						   "avx512"};

} // namespace

const Kernels *
avx512_kernels()
{
	/* Only reads libgcc's CPU flags, so it is safe to run on CPUs without AVX-512. */
	__builtin_cpu_init();
	bool supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
					 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vpopcntdq");
	return supported ? &table : nullptr;
}

#else

const Kernels *
avx512_kernels()
{
	return nullptr;
}

#endif

} // namespace hannoy::simd
