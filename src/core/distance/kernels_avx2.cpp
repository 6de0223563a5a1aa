/*
 * kernels_avx2.cpp: the AVX2+FMA distance kernels.
 *
 * Built with -mavx2 -mfma -mpopcnt, so nothing here may run before avx2_kernels() has
 * checked the CPU. Everything except that function has internal linkage: an inline function
 * emitted here with AVX2 code must never be picked by the linker for the portable build.
 */
#include "kernels.hpp"

#include <cstring>

#if defined(__AVX2__) && defined(__FMA__) && defined(__POPCNT__)
#include <immintrin.h>
#define HANNOY_HAVE_AVX2 1
#endif

#include "../pure_cpp.hpp"

namespace hannoy::simd
{

#ifdef HANNOY_HAVE_AVX2

namespace
{

/// Eight -1 lanes then eight 0 lanes: an unaligned load at offset 8 - r masks the first r lanes.
alignas(64) const int32_t tail_mask_source[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/// Mask enabling the first r lanes, 0 < r < 8.
inline __m256i
tail_mask(size_t r)
{
	return _mm256_loadu_si256(reinterpret_cast<const __m256i *>(tail_mask_source + 8 - r));
}

inline float
horizontal_sum(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/// Per-metric accumulation step: acc + term(x, y) lane-wise. Zero inputs give zero terms,
/// which is what lets the masked tail load zeros past the end.
struct L2Step {
	static __m256 step(__m256 acc, __m256 x, __m256 y)
	{
		__m256 d = _mm256_sub_ps(x, y);
		return _mm256_fmadd_ps(d, d, acc);
	}
};

struct DotStep {
	static __m256 step(__m256 acc, __m256 x, __m256 y) { return _mm256_fmadd_ps(x, y, acc); }
};

struct L1Step {
	static __m256 step(__m256 acc, __m256 x, __m256 y)
	{
		return _mm256_add_ps(acc, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(x, y)));
	}
};

/// Loads 8 lanes as floats from float storage.
struct FloatLoad {
	using Element = float;
	static __m256 load(const float *p) { return _mm256_loadu_ps(p); }
	static __m256 load_first(size_t r, const float *p) { return _mm256_maskload_ps(p, tail_mask(r)); }
};

/// Loads 8 lanes as floats from one byte per element (Encoding::U8): the same values as the
/// floats they encode, so sums over them are bit for bit those over the floats.
struct ByteLoad {
	using Element = uint8_t;
	static __m256 load(const uint8_t *p)
	{
		return _mm256_cvtepi32_ps(
			_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p))));
	}
	static __m256 load_first(size_t r, const uint8_t *p)
	{
		uint8_t bytes[8] = {};
		std::memcpy(bytes, p, r);
		return load(bytes);
	}
};

/// sum(term(a[i], b[i])) with four independent 8-lane accumulators, so four FMAs are in
/// flight per step; the 0..31 leftover floats use up to two full steps and one masked one.
/// The summation order depends only on n, never on addresses or on how the elements are
/// stored, so results are reproducible.
template <class Op, class A = FloatLoad, class B = FloatLoad>
inline float
sum_terms(const typename A::Element *a, const typename B::Element *b, size_t n)
{
	__m256 acc0 = _mm256_setzero_ps();
	__m256 acc1 = _mm256_setzero_ps();
	__m256 acc2 = _mm256_setzero_ps();
	__m256 acc3 = _mm256_setzero_ps();
	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		acc0 = Op::step(acc0, A::load(a + i), B::load(b + i));
		acc1 = Op::step(acc1, A::load(a + i + 8), B::load(b + i + 8));
		acc2 = Op::step(acc2, A::load(a + i + 16), B::load(b + i + 16));
		acc3 = Op::step(acc3, A::load(a + i + 24), B::load(b + i + 24));
	}
	if (i + 16 <= n) {
		acc0 = Op::step(acc0, A::load(a + i), B::load(b + i));
		acc1 = Op::step(acc1, A::load(a + i + 8), B::load(b + i + 8));
		i += 16;
	}
	if (i + 8 <= n) {
		acc2 = Op::step(acc2, A::load(a + i), B::load(b + i));
		i += 8;
	}
	if (i < n)
		acc3 = Op::step(acc3, A::load_first(n - i, a + i), B::load_first(n - i, b + i));
	return horizontal_sum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

/// Loads a word from a byte pointer of any alignment.
template <class Word>
inline Word
load(const uint8_t *p)
{
	Word w;
	std::memcpy(&w, p, sizeof w);
	return w;
}

inline __m256i
load_xor(const uint8_t *a, const uint8_t *b)
{
	return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(a)),
							_mm256_loadu_si256(reinterpret_cast<const __m256i *>(b)));
}

/// Bits set in each byte of v, looked up per nibble with a shuffle (Mula's method): on long
/// inputs this counts 32 bytes in a few vector operations where popcnt needs four words.
inline __m256i
popcount_bytes(__m256i v)
{
	const __m256i nibble_counts = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2,
												   1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
	const __m256i low_nibbles = _mm256_set1_epi8(0x0f);
	__m256i low = _mm256_shuffle_epi8(nibble_counts, _mm256_and_si256(v, low_nibbles));
	__m256i high = _mm256_shuffle_epi8(nibble_counts, _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles));
	return _mm256_add_epi8(low, high);
}

/// Bytes counted into 8-bit lanes before they are widened: 30 vectors add at most 240 per lane.
constexpr size_t block_bytes = 30 * 32;

/// Bits set in a ^ b over the whole 32-byte vectors of [0, nbytes); *done gets how many bytes that was.
uint64_t
hamming_vectors(const uint8_t *a, const uint8_t *b, size_t nbytes, size_t *done)
{
	const __m256i zero = _mm256_setzero_si256();
	__m256i totals = zero;
	size_t i = 0;
	while (i + 32 <= nbytes) {
		size_t block_end = nbytes - i > block_bytes ? i + block_bytes : nbytes;
		__m256i counts = zero;
		for (; i + 64 <= block_end; i += 64)
			counts =
				_mm256_add_epi8(counts, _mm256_add_epi8(popcount_bytes(load_xor(a + i, b + i)),
														popcount_bytes(load_xor(a + i + 32, b + i + 32))));
		if (i + 32 <= block_end) {
			counts = _mm256_add_epi8(counts, popcount_bytes(load_xor(a + i, b + i)));
			i += 32;
		}
		totals = _mm256_add_epi64(totals, _mm256_sad_epu8(counts, zero));
	}
	*done = i;
	__m128i s = _mm_add_epi64(_mm256_castsi256_si128(totals), _mm256_extracti128_si256(totals, 1));
	s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
	return static_cast<uint64_t>(_mm_cvtsi128_si64(s));
}

uint64_t
hamming(const uint8_t *a, const uint8_t *b, size_t nbytes)
{
	uint64_t c0 = 0, c1 = 0, c2 = 0;
	size_t i = 0;
	if (nbytes >= 32)
		c0 = hamming_vectors(a, b, nbytes, &i);
	/* The last 0..31 bytes: whole words with popcnt, then one 4-, 2- and 1-byte piece each. */
	for (; i + 8 <= nbytes; i += 8)
		c1 += static_cast<uint64_t>(_mm_popcnt_u64(load<uint64_t>(a + i) ^ load<uint64_t>(b + i)));
	size_t rest = nbytes - i;
	if (rest & 4) {
		c2 += static_cast<uint64_t>(_mm_popcnt_u32(load<uint32_t>(a + i) ^ load<uint32_t>(b + i)));
		i += 4;
	}
	if (rest & 2) {
		c1 += static_cast<uint64_t>(_mm_popcnt_u32(load<uint16_t>(a + i) ^ load<uint16_t>(b + i)));
		i += 2;
	}
	if (rest & 1)
		c2 += static_cast<uint64_t>(_mm_popcnt_u32(static_cast<unsigned>(a[i] ^ b[i])));
	return c0 + c1 + c2;
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
						   "avx2"};

} // namespace

const Kernels *
avx2_kernels()
{
	/* Only reads libgcc's CPU flags, so it is safe to run on CPUs without AVX2. */
	__builtin_cpu_init();
	bool supported =
		__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt");
	return supported ? &table : nullptr;
}

#else

const Kernels *
avx2_kernels()
{
	return nullptr;
}

#endif

} // namespace hannoy::simd
