/*
 * kernels.hpp: raw distance kernels, one implementation per instruction set.
 *
 * These are the hot path of build and search. Each kernel works on unaligned inputs
 * (vectors come straight from LMDB's memory map) and any length, including odd tails.
 * Metric semantics (normalisation, what "distance" means to SQL) live in metric.hpp;
 * this layer only does arithmetic. The table is chosen once, at first use, from the
 * running CPU's features, so one binary runs on any x86-64 machine.
 */
#pragma once

#include <cstddef>
#include <cstdint>

namespace hannoy::simd
{

/// One instruction set's kernels. Float kernels accumulate in float, so tables differ from
/// each other in the last bits; within one table a result depends only on the values,
/// never on where they sit in memory, and every kernel is symmetric in a and b.
struct Kernels {
	/// Squared euclidean distance: sum((a[i] - b[i])^2).
	float (*l2_squared)(const float *a, const float *b, size_t n);
	/// Dot product: sum(a[i] * b[i]).
	float (*dot)(const float *a, const float *b, size_t n);
	/// Manhattan distance: sum(|a[i] - b[i]|).
	float (*l1)(const float *a, const float *b, size_t n);
	/// Number of differing bits between two byte strings of nbytes bytes.
	uint64_t (*hamming)(const uint8_t *a, const uint8_t *b, size_t nbytes);
	/// The float kernels with `b` (or both) stored one byte per element (Encoding::U8, see
	/// metric.hpp): the result is bit for bit the float kernel's on the decoded floats.
	float (*l2_squared_fb)(const float *a, const uint8_t *b, size_t n);
	float (*dot_fb)(const float *a, const uint8_t *b, size_t n);
	float (*l1_fb)(const float *a, const uint8_t *b, size_t n);
	float (*l2_squared_bb)(const uint8_t *a, const uint8_t *b, size_t n);
	float (*dot_bb)(const uint8_t *a, const uint8_t *b, size_t n);
	float (*l1_bb)(const uint8_t *a, const uint8_t *b, size_t n);
	/// Short name shown by hannoy_kernels() and in the benchmark ("scalar", "avx2", "avx512").
	const char *name;
};

/// Portable implementation, always available.
const Kernels &scalar_kernels();
/// AVX2+FMA implementation, or nullptr when this CPU (or compiler) lacks it.
const Kernels *avx2_kernels();
/// AVX-512 (F, BW, VPOPCNTDQ for hamming) implementation, or nullptr when unavailable.
const Kernels *avx512_kernels();

/// The best implementation for this CPU, chosen once; honours HANNOY_KERNELS=scalar|avx2|avx512
/// in the environment so tests and benchmarks can force one.
const Kernels &active_kernels();

/// The choice active_kernels() makes, uncached: the table named by requested ("scalar",
/// "avx2" or "avx512") when this CPU supports it, otherwise the best available one
/// (also for nullptr or an unknown name). Exposed so tests can check the selection rule.
const Kernels &select_kernels(const char *requested);

} // namespace hannoy::simd
