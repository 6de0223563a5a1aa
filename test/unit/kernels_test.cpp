/*
 * kernels_test.cpp: unit tests of the distance kernels (src/core/distance/kernels*.cpp).
 *
 * Every kernel table this CPU supports is checked against a plain double-precision reference
 * over all short lengths, a sample of long ones, unaligned inputs and large magnitudes, and
 * the selection rule behind active_kernels() is checked through select_kernels().
 */
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../../src/core/distance/kernels.hpp"

namespace hannoy::simd
{
namespace
{

/// A reference result: the exact-ish value and the sum of the absolute values of its terms,
/// which scales the tolerance.
struct Reference {
	double value;
	double magnitude;
};

Reference
reference_l2_squared(const float *a, const float *b, size_t n)
{
	Reference r{0.0, 0.0};
	for (size_t i = 0; i < n; i++) {
		double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
		r.value += d * d;
		r.magnitude += d * d;
	}
	return r;
}

Reference
reference_dot(const float *a, const float *b, size_t n)
{
	Reference r{0.0, 0.0};
	for (size_t i = 0; i < n; i++) {
		double t = static_cast<double>(a[i]) * static_cast<double>(b[i]);
		r.value += t;
		r.magnitude += std::fabs(t);
	}
	return r;
}

Reference
reference_l1(const float *a, const float *b, size_t n)
{
	Reference r{0.0, 0.0};
	for (size_t i = 0; i < n; i++) {
		double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
		r.value += d;
		r.magnitude += d;
	}
	return r;
}

uint64_t
reference_hamming(const uint8_t *a, const uint8_t *b, size_t nbytes)
{
	uint64_t bits = 0;
	for (size_t i = 0; i < nbytes; i++)
		for (unsigned bit = 0; bit < 8; bit++)
			bits += ((a[i] ^ b[i]) >> bit) & 1u;
	return bits;
}

/*
 * Tolerance: |kernel - reference| <= 1e-5 * sqrt(n) * (sum of |term|). Float accumulation
 * over partial sums has a typical error of about eps * sqrt(n) relative to the sum of absolute
 * terms (eps = 6e-8), so 1e-5 leaves two orders of magnitude of headroom. A dropped or
 * doubled element moves the result by about 1/n of that sum, which this bound catches up to
 * n of about 2000; FloatKernelsExactOnSmallIntegers covers the longer lengths exactly.
 */
void
expect_close(float got, Reference want, size_t n, const char *what)
{
	double tolerance = 1e-5 * std::sqrt(static_cast<double>(n)) * want.magnitude;
	EXPECT_LE(std::fabs(static_cast<double>(got) - want.value), tolerance)
		<< what << " n=" << n << " got=" << got << " want=" << want.value;
}

/// Lengths for the float kernels: every one up to 300, then a sample up to 4100 that covers
/// common embedding sizes and lengths just around vector-width multiples.
std::vector<size_t>
float_lengths()
{
	std::vector<size_t> lengths;
	for (size_t n = 1; n <= 300; n++)
		lengths.push_back(n);
	for (size_t n :
		 {319,  320,  321,  383,  384,  385,  511,  512,  513,  767,  768,  769,  784,  1000, 1023,
		  1024, 1025, 1535, 1536, 1537, 2047, 2048, 3071, 3072, 3073, 4095, 4096, 4097, 4099, 4100})
		lengths.push_back(n);
	return lengths;
}

/// Byte lengths for hamming: every one up to 600, then a few larger ones.
std::vector<size_t>
byte_lengths()
{
	std::vector<size_t> lengths;
	for (size_t n = 0; n <= 600; n++)
		lengths.push_back(n);
	for (size_t n : {1023, 1024, 1025, 4095, 4096, 4097, 10007})
		lengths.push_back(n);
	return lengths;
}

std::vector<float>
random_floats(std::mt19937 &rng, size_t n, float limit)
{
	std::uniform_real_distribution<float> dist(-limit, limit);
	std::vector<float> v(n);
	for (float &x : v)
		x = dist(rng);
	return v;
}

std::vector<uint8_t>
random_bytes(std::mt19937 &rng, size_t n)
{
	std::uniform_int_distribution<int> dist(0, 255);
	std::vector<uint8_t> v(n);
	for (uint8_t &x : v)
		x = static_cast<uint8_t>(dist(rng));
	return v;
}

/// Table by name, or nullptr when this CPU lacks it.
const Kernels *
table_named(const std::string &name)
{
	if (name == "scalar")
		return &scalar_kernels();
	if (name == "avx2")
		return avx2_kernels();
	return avx512_kernels();
}

/// Checks all three float kernels of k on a and b against the reference.
void
check_float_kernels(const Kernels &k, const float *a, const float *b, size_t n)
{
	expect_close(k.l2_squared(a, b, n), reference_l2_squared(a, b, n), n, "l2_squared");
	expect_close(k.dot(a, b, n), reference_dot(a, b, n), n, "dot");
	expect_close(k.l1(a, b, n), reference_l1(a, b, n), n, "l1");
}

/// Runs once per table name; skipped when this CPU lacks the table.
class KernelsTest : public ::testing::TestWithParam<std::string>
{
protected:
	void SetUp() override
	{
		kernels = table_named(GetParam());
		if (kernels == nullptr)
			GTEST_SKIP() << GetParam() << " kernels are not available on this CPU";
	}

	/// Float kernels at every length with inputs in [-limit, limit], placed offset floats
	/// into buffers sized exactly to fit so any over-read is visible to AddressSanitizer.
	void check_floats(float limit, size_t offset, uint32_t seed)
	{
		std::mt19937 rng(seed);
		for (size_t n : float_lengths()) {
			std::vector<float> a = random_floats(rng, n + offset, limit);
			std::vector<float> b = random_floats(rng, n + offset, limit);
			check_float_kernels(*kernels, a.data() + offset, b.data() + offset, n);
		}
	}

	const Kernels *kernels = nullptr;
};

TEST_P(KernelsTest, NameMatchesTable)
{
	EXPECT_EQ(GetParam(), kernels->name);
}

TEST_P(KernelsTest, EmptyInputsGiveZero)
{
	float x = 1.0f;
	uint8_t byte = 0xff;
	EXPECT_EQ(kernels->l2_squared(&x, &x, 0), 0.0f);
	EXPECT_EQ(kernels->dot(&x, &x, 0), 0.0f);
	EXPECT_EQ(kernels->l1(&x, &x, 0), 0.0f);
	EXPECT_EQ(kernels->hamming(&byte, &byte, 0), 0u);
	EXPECT_EQ(kernels->l2_squared_fb(&x, &byte, 0), 0.0f);
	EXPECT_EQ(kernels->l1_bb(&byte, &byte, 0), 0.0f);
}

TEST_P(KernelsTest, FloatKernelsMatchReferenceUnitRange)
{
	check_floats(1.0f, 0, 1);
}

TEST_P(KernelsTest, FloatKernelsMatchReferenceLargeMagnitude)
{
	check_floats(1000.0f, 0, 2);
}

TEST_P(KernelsTest, FloatKernelsMatchReferenceUnaligned)
{
	check_floats(1.0f, 1, 3);
	check_floats(1000.0f, 1, 4);
}

TEST_P(KernelsTest, FloatKernelsMatchReferenceMisalignedByDifferentAmounts)
{
	/* a and b misaligned differently, so no loop can assume they share an alignment. */
	std::mt19937 rng(5);
	for (size_t n : float_lengths()) {
		std::vector<float> a = random_floats(rng, n + 3, 1.0f);
		std::vector<float> b = random_floats(rng, n + 5, 1.0f);
		check_float_kernels(*kernels, a.data() + 3, b.data() + 5, n);
	}
}

TEST_P(KernelsTest, FloatKernelsMatchReferenceAtEveryAlignment)
{
	/*
	 * Try every position of a and b within a cache line, at lengths around the vector widths
	 * and one long enough to use every loop; the result must not depend on the position.
	 */
	std::mt19937 rng(8);
	const size_t max_n = 784;
	std::vector<float> a_buffer = random_floats(rng, max_n + 32, 1.0f);
	std::vector<float> b_buffer = random_floats(rng, max_n + 32, 1.0f);
	const float *a_line = a_buffer.data() + (0 - reinterpret_cast<uintptr_t>(a_buffer.data())) % 64 / 4;
	const float *b_line = b_buffer.data() + (0 - reinterpret_cast<uintptr_t>(b_buffer.data())) % 64 / 4;
	std::vector<size_t> lengths;
	for (size_t n = 1; n <= 80; n++)
		lengths.push_back(n);
	lengths.push_back(max_n);
	for (size_t a_offset = 0; a_offset < 16; a_offset++)
		for (size_t b_offset = 0; b_offset < 16; b_offset++)
			for (size_t n : lengths) {
				SCOPED_TRACE(::testing::Message() << "a_offset=" << a_offset << " b_offset=" << b_offset);
				check_float_kernels(*kernels, a_line + a_offset, b_line + b_offset, n);
			}
	/* Same values at every address give bit-identical results. */
	for (size_t n : lengths) {
		std::vector<float> a_copy(a_line, a_line + n), b_copy(b_line, b_line + n);
		float l2 = kernels->l2_squared(a_line, b_line, n);
		float dot = kernels->dot(a_line, b_line, n);
		for (size_t offset = 1; offset < 16; offset++) {
			std::vector<float> shifted_a(n + offset), shifted_b(n + 2 * offset);
			std::copy(a_copy.begin(), a_copy.end(), shifted_a.begin() + offset);
			std::copy(b_copy.begin(), b_copy.end(), shifted_b.begin() + 2 * offset);
			EXPECT_EQ(kernels->l2_squared(shifted_a.data() + offset, shifted_b.data() + 2 * offset, n), l2)
				<< n;
			EXPECT_EQ(kernels->dot(shifted_a.data() + offset, shifted_b.data() + 2 * offset, n), dot) << n;
		}
	}
}

TEST_P(KernelsTest, FloatKernelsAreSymmetric)
{
	std::mt19937 rng(9);
	for (size_t n : float_lengths()) {
		std::vector<float> a = random_floats(rng, n + 1, 1.0f);
		std::vector<float> b = random_floats(rng, n + 3, 1.0f);
		const float *pa = a.data() + 1, *pb = b.data() + 3;
		EXPECT_EQ(kernels->l2_squared(pa, pb, n), kernels->l2_squared(pb, pa, n)) << "n=" << n;
		EXPECT_EQ(kernels->dot(pa, pb, n), kernels->dot(pb, pa, n)) << "n=" << n;
		EXPECT_EQ(kernels->l1(pa, pb, n), kernels->l1(pb, pa, n)) << "n=" << n;
	}
}

TEST_P(KernelsTest, FloatKernelsExactOnSmallIntegers)
{
	/*
	 * Integers in [-3, 3] keep every partial sum an integer below 2^24, so float arithmetic
	 * is exact in any order and the result must equal the reference exactly: this catches a
	 * dropped or repeated element at any length, where the relative tolerance above cannot.
	 */
	std::mt19937 rng(7);
	std::uniform_int_distribution<int> dist(-3, 3);
	for (size_t n : float_lengths()) {
		std::vector<float> a(n + 1), b(n + 1);
		int64_t l2 = 0, dot = 0, l1 = 0;
		for (size_t i = 1; i <= n; i++) {
			int x = dist(rng), y = dist(rng);
			a[i] = static_cast<float>(x);
			b[i] = static_cast<float>(y);
			l2 += (x - y) * (x - y);
			dot += x * y;
			l1 += std::abs(x - y);
		}
		EXPECT_EQ(kernels->l2_squared(a.data() + 1, b.data() + 1, n), static_cast<float>(l2)) << "n=" << n;
		EXPECT_EQ(kernels->dot(a.data() + 1, b.data() + 1, n), static_cast<float>(dot)) << "n=" << n;
		EXPECT_EQ(kernels->l1(a.data() + 1, b.data() + 1, n), static_cast<float>(l1)) << "n=" << n;
	}
}

TEST_P(KernelsTest, ByteKernelsEqualFloatKernelsOnTheSameValues)
{
	/*
	 * Vectors stored one byte per element (Encoding::U8) must rank exactly as their floats do:
	 * the byte kernels give bit for bit the float kernels' result on the decoded values, at
	 * every length and byte offset (the bytes sit in buffers sized to fit, for ASan).
	 */
	std::mt19937 rng(11);
	std::uniform_int_distribution<int> byte(0, 255);
	for (size_t n : float_lengths())
		for (size_t offset : {size_t(0), size_t(1), size_t(7)}) {
			std::vector<float> query = random_floats(rng, n, 300.0f);
			std::vector<uint8_t> a(n + offset), b(n + offset);
			std::vector<float> fa(n), fb(n);
			for (size_t i = 0; i < n; i++) {
				a[offset + i] = static_cast<uint8_t>(byte(rng));
				b[offset + i] = static_cast<uint8_t>(byte(rng));
				fa[i] = a[offset + i];
				fb[i] = b[offset + i];
			}
			const uint8_t *pa = a.data() + offset, *pb = b.data() + offset;
			ASSERT_EQ(kernels->l2_squared_fb(query.data(), pb, n),
					  kernels->l2_squared(query.data(), fb.data(), n))
				<< "n=" << n;
			ASSERT_EQ(kernels->dot_fb(query.data(), pb, n), kernels->dot(query.data(), fb.data(), n))
				<< "n=" << n;
			ASSERT_EQ(kernels->l1_fb(query.data(), pb, n), kernels->l1(query.data(), fb.data(), n))
				<< "n=" << n;
			ASSERT_EQ(kernels->l2_squared_bb(pa, pb, n), kernels->l2_squared(fa.data(), fb.data(), n))
				<< "n=" << n;
			ASSERT_EQ(kernels->dot_bb(pa, pb, n), kernels->dot(fa.data(), fb.data(), n)) << "n=" << n;
			ASSERT_EQ(kernels->l1_bb(pa, pb, n), kernels->l1(fa.data(), fb.data(), n)) << "n=" << n;
		}
}

TEST_P(KernelsTest, HammingMatchesReferenceAtEveryByteOffset)
{
	std::mt19937 rng(6);
	for (size_t n : byte_lengths())
		for (size_t offset = 0; offset < 8; offset++) {
			std::vector<uint8_t> a = random_bytes(rng, n + offset);
			std::vector<uint8_t> b = random_bytes(rng, n + 7 - offset);
			const uint8_t *pa = a.data() + offset;
			const uint8_t *pb = b.data() + 7 - offset;
			ASSERT_EQ(kernels->hamming(pa, pb, n), reference_hamming(pa, pb, n))
				<< "n=" << n << " offset=" << offset;
		}
}

TEST_P(KernelsTest, HammingCountsEveryBitWhenAllDiffer)
{
	for (size_t n : byte_lengths()) {
		std::vector<uint8_t> ones(n, 0xff), zeros(n, 0x00);
		ASSERT_EQ(kernels->hamming(ones.data(), zeros.data(), n), 8u * n) << "n=" << n;
		ASSERT_EQ(kernels->hamming(ones.data(), ones.data(), n), 0u) << "n=" << n;
	}
}

INSTANTIATE_TEST_SUITE_P(AllTables, KernelsTest, ::testing::Values("scalar", "avx2", "avx512"),
						 [](const ::testing::TestParamInfo<std::string> &param_info) {
							 return param_info.param;
						 });

TEST(SelectKernels, NamedTableWhenAvailable)
{
	EXPECT_EQ(&select_kernels("scalar"), &scalar_kernels());
	if (const Kernels *k = avx2_kernels()) {
		EXPECT_EQ(&select_kernels("avx2"), k);
	}
	if (const Kernels *k = avx512_kernels()) {
		EXPECT_EQ(&select_kernels("avx512"), k);
	}
}

TEST(SelectKernels, BestTableOtherwise)
{
	const Kernels *best = avx512_kernels();
	if (best == nullptr)
		best = avx2_kernels();
	if (best == nullptr)
		best = &scalar_kernels();
	EXPECT_EQ(&select_kernels(nullptr), best);
	EXPECT_EQ(&select_kernels(""), best);
	EXPECT_EQ(&select_kernels("sse9"), best);
	EXPECT_EQ(&select_kernels("AVX2"), best);
	if (avx2_kernels() == nullptr) {
		EXPECT_EQ(&select_kernels("avx2"), best);
	}
	if (avx512_kernels() == nullptr) {
		EXPECT_EQ(&select_kernels("avx512"), best);
	}
}

TEST(ActiveKernels, FollowsEnvironmentAndStaysFixed)
{
	const Kernels &active = active_kernels();
	EXPECT_EQ(&active, &select_kernels(std::getenv("HANNOY_KERNELS")));
	EXPECT_EQ(&active_kernels(), &active);
}

} // namespace
} // namespace hannoy::simd
