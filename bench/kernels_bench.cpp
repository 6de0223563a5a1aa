/*
 * kernels_bench.cpp: micro-benchmark of the distance kernels (src/core/distance/kernels*.cpp).
 *
 * Reports nanoseconds per distance for every kernel table this CPU supports, at common
 * embedding sizes; benchmarks are named kernel/table/size, the size in floats for the float
 * kernels and in bits for hamming, with inputs on 64-byte boundaries. The same names ending
 * in /misaligned place the two inputs at different offsets within a cache line. The byte
 * kernels (l2_squared_fb...: a float query against a vector stored one byte per element) are
 * named like the float ones, the size in elements.
 */
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "../src/core/distance/kernels.hpp"

namespace
{

using hannoy::simd::Kernels;

using FloatKernel = float (*)(const float *, const float *, size_t);
using FloatByteKernel = float (*)(const float *, const uint8_t *, size_t);

/// Sizes measured: floats per vector for the float kernels, bits per vector for hamming.
constexpr size_t sizes[] = {128, 784, 1536, 3072};

/// A copy of values starting offset bytes past a 64-byte boundary; offset is a multiple of
/// the element size.
template <class T> class Placed
{
public:
	Placed(const std::vector<T> &values, size_t offset) : storage_(values.size() + 128 / sizeof(T))
	{
		size_t to_line = (0 - reinterpret_cast<uintptr_t>(storage_.data())) % 64;
		data_ = storage_.data() + (to_line + offset) / sizeof(T);
		std::copy(values.begin(), values.end(), data_);
	}
	const T *data() const { return data_; }

private:
	std::vector<T> storage_;
	T *data_;
};

/// n floats in [-1, 1], fixed by the seed so every table sees the same data.
std::vector<float>
random_floats(size_t n, uint32_t seed)
{
	std::mt19937 rng(seed);
	std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
	std::vector<float> v(n);
	for (float &x : v)
		x = dist(rng);
	return v;
}

std::vector<uint8_t>
random_bytes(size_t n, uint32_t seed)
{
	std::mt19937 rng(seed);
	std::uniform_int_distribution<int> dist(0, 255);
	std::vector<uint8_t> v(n);
	for (uint8_t &x : v)
		x = static_cast<uint8_t>(dist(rng));
	return v;
}

/// Byte offsets of a and b from a 64-byte boundary in the /misaligned float variants; hamming
/// adds 1 and 3 bytes so its inputs are not even word-aligned.
constexpr size_t misaligned_a = 4, misaligned_b = 24;

void
bench_float(benchmark::State &state, FloatKernel kernel, size_t n, bool misaligned)
{
	Placed<float> a(random_floats(n, 1), misaligned ? misaligned_a : 0);
	Placed<float> b(random_floats(n, 2), misaligned ? misaligned_b : 0);
	const float *pa = a.data(), *pb = b.data();
	for (auto _ : state) {
		benchmark::DoNotOptimize(pa);
		benchmark::DoNotOptimize(pb);
		benchmark::DoNotOptimize(kernel(pa, pb, n));
	}
}

void
bench_float_byte(benchmark::State &state, FloatByteKernel kernel, size_t n, bool misaligned)
{
	Placed<float> a(random_floats(n, 1), misaligned ? misaligned_a : 0);
	Placed<uint8_t> b(random_bytes(n, 2), misaligned ? misaligned_b + 3 : 0);
	const float *pa = a.data();
	const uint8_t *pb = b.data();
	for (auto _ : state) {
		benchmark::DoNotOptimize(pa);
		benchmark::DoNotOptimize(pb);
		benchmark::DoNotOptimize(kernel(pa, pb, n));
	}
}

void
bench_hamming(benchmark::State &state, const Kernels *k, size_t bits, bool misaligned)
{
	size_t nbytes = bits / 8;
	Placed<uint8_t> a(random_bytes(nbytes, 1), misaligned ? misaligned_a + 1 : 0);
	Placed<uint8_t> b(random_bytes(nbytes, 2), misaligned ? misaligned_b + 3 : 0);
	const uint8_t *pa = a.data(), *pb = b.data();
	for (auto _ : state) {
		benchmark::DoNotOptimize(pa);
		benchmark::DoNotOptimize(pb);
		benchmark::DoNotOptimize(k->hamming(pa, pb, nbytes));
	}
}

void
register_table(const Kernels *k, bool misaligned)
{
	if (k == nullptr)
		return;
	const struct {
		const char *name;
		FloatKernel kernel;
	} float_kernels[] = {{"l2_squared", k->l2_squared}, {"dot", k->dot}, {"l1", k->l1}};
	const std::string suffix = misaligned ? "/misaligned" : "";

	for (const auto &fk : float_kernels)
		for (size_t n : sizes) {
			std::string name = std::string(fk.name) + "/" + k->name + "/" + std::to_string(n) + suffix;
			benchmark::RegisterBenchmark(name.c_str(), bench_float, fk.kernel, n, misaligned);
		}
	const struct {
		const char *name;
		FloatByteKernel kernel;
	} byte_kernels[] = {{"l2_squared_fb", k->l2_squared_fb}, {"dot_fb", k->dot_fb}, {"l1_fb", k->l1_fb}};
	for (const auto &bk : byte_kernels)
		for (size_t n : sizes) {
			std::string name = std::string(bk.name) + "/" + k->name + "/" + std::to_string(n) + suffix;
			benchmark::RegisterBenchmark(name.c_str(), bench_float_byte, bk.kernel, n, misaligned);
		}
	for (size_t bits : sizes) {
		std::string name = std::string("hamming/") + k->name + "/" + std::to_string(bits) + suffix;
		benchmark::RegisterBenchmark(name.c_str(), bench_hamming, k, bits, misaligned);
	}
}

} // namespace

int
main(int argc, char **argv)
{
	for (bool misaligned : {false, true}) {
		register_table(&hannoy::simd::scalar_kernels(), misaligned);
		register_table(hannoy::simd::avx2_kernels(), misaligned);
		register_table(hannoy::simd::avx512_kernels(), misaligned);
	}

	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	return 0;
}
