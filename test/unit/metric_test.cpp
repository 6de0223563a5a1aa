/*
 * metric_test.cpp: metric semantics: exact SQL distances, cosine normalisation and zero
 * vectors, binary codes, and rejection of non-finite input.
 */
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/distance/metric.hpp"
#include "core/error.hpp"

namespace hannoy
{
namespace
{

TEST(Metric, ExactDistances)
{
	float a[] = {1, 2, 3};
	float b[] = {4, 6, 3};
	EXPECT_DOUBLE_EQ(exact_l2(a, b, 3), 5.0);
	EXPECT_DOUBLE_EQ(exact_inner_product(a, b, 3), 4 + 12 + 9);
	EXPECT_DOUBLE_EQ(exact_l1(a, b, 3), 7.0);
	EXPECT_NEAR(exact_cosine(a, b, 3), 1.0 - 25.0 / (std::sqrt(14.0) * std::sqrt(61.0)), 1e-12);
	float c[] = {-1, -2, -3};
	EXPECT_DOUBLE_EQ(exact_cosine(a, c, 3), 2.0);
	EXPECT_DOUBLE_EQ(exact_cosine(a, a, 3), 0.0);
	uint8_t x[] = {0xff, 0x0f}, y[] = {0x00, 0x0e};
	EXPECT_EQ(exact_hamming(x, y, 2), 9u);
}

TEST(Metric, CosineOfZeroVectorIsOne)
{
	float zero[] = {0, 0, 0};
	float a[] = {1, 2, 3};
	EXPECT_DOUBLE_EQ(exact_cosine(zero, a, 3), 1.0);
	EXPECT_DOUBLE_EQ(exact_cosine(zero, zero, 3), 1.0);
	/* The index agrees: a zero vector is stored as zero and ranks at distance 1. */
	float stored_zero[3], stored_a[3];
	preprocess_floats(Metric::Cosine, zero, 3, stored_zero);
	preprocess_floats(Metric::Cosine, a, 3, stored_a);
	Space space(Metric::Cosine, 3);
	EXPECT_FLOAT_EQ(space.distance(stored_zero, stored_a), 1.0f);
	EXPECT_FALSE(std::isnan(space.distance(stored_zero, stored_zero)));
}

TEST(Metric, ProxiesOrderLikeExactDistances)
{
	float q[] = {0.5f, -1, 2, 0};
	float v1[] = {0.4f, -1, 2.2f, 0.1f};
	float v2[] = {3, 1, -2, 0};
	for (Metric metric : {Metric::L2, Metric::Cosine, Metric::InnerProduct, Metric::L1}) {
		float sq[4], s1[4], s2[4];
		preprocess_floats(metric, q, 4, sq);
		preprocess_floats(metric, v1, 4, s1);
		preprocess_floats(metric, v2, 4, s2);
		Space space(metric, 4);
		double e1, e2;
		switch (metric) {
		case Metric::L2:
			e1 = exact_l2(q, v1, 4), e2 = exact_l2(q, v2, 4);
			break;
		case Metric::Cosine:
			e1 = exact_cosine(q, v1, 4), e2 = exact_cosine(q, v2, 4);
			break;
		case Metric::InnerProduct:
			e1 = -exact_inner_product(q, v1, 4), e2 = -exact_inner_product(q, v2, 4);
			break;
		default:
			e1 = exact_l1(q, v1, 4), e2 = exact_l1(q, v2, 4);
			break;
		}
		EXPECT_EQ(space.distance(sq, s1) < space.distance(sq, s2), e1 < e2) << metric_name(metric);
	}
}

TEST(Metric, NonFiniteRejected)
{
	float nan_vec[] = {1, std::numeric_limits<float>::quiet_NaN()};
	float inf_vec[] = {-std::numeric_limits<float>::infinity(), 1};
	float out[2];
	try {
		preprocess_floats(Metric::L2, nan_vec, 2, out);
		FAIL();
	} catch (const Error &e) {
		EXPECT_EQ(e.code(), ErrorCode::InvalidInput);
		EXPECT_STREQ(e.what(), "NaN not allowed in vector");
		EXPECT_EQ(e.detail(), "Element 2 (counting from 1) is NaN.");
	}
	try {
		preprocess_floats(Metric::Cosine, inf_vec, 2, out);
		FAIL();
	} catch (const Error &e) {
		EXPECT_STREQ(e.what(), "infinite value not allowed in vector");
	}
}

TEST(Metric, FirstNonFiniteFindsTheFirstBadElementAnywhere)
{
	const float bad_values[] = {std::numeric_limits<float>::quiet_NaN(),
								std::numeric_limits<float>::infinity(),
								-std::numeric_limits<float>::infinity()};
	for (uint32_t dims : {1u, 15u, 16u, 17u, 33u, 784u}) {
		/* Extremes that are finite: largest, smallest normal, subnormal, negative zero. */
		std::vector<float> values(dims);
		for (uint32_t i = 0; i < dims; i++) {
			const float finite[] = {std::numeric_limits<float>::max(),
									-std::numeric_limits<float>::max(),
									std::numeric_limits<float>::min(),
									std::numeric_limits<float>::denorm_min(),
									-0.0f,
									1.5f};
			values[i] = finite[i % 6];
		}
		EXPECT_EQ(first_non_finite(values.data(), dims), -1) << dims;
		for (uint32_t position = 0; position < dims; position += (dims > 40 ? 37 : 1)) {
			for (float bad : bad_values) {
				std::vector<float> v = values;
				v[position] = bad;
				if (position + 3 < dims)
					v[position + 3] = bad; /* a later one is not reported */
				EXPECT_EQ(first_non_finite(v.data(), dims), static_cast<int64_t>(position))
					<< dims << " dims, position " << position;
			}
		}
	}
}

TEST(Metric, BinaryQuantizeBitOrder)
{
	float v[70];
	for (int i = 0; i < 70; i++)
		v[i] = (i % 3 == 0) ? 1.0f : (i % 3 == 1 ? -1.0f : 0.0f);
	std::vector<uint8_t> code(binary_code_bytes(70));
	ASSERT_EQ(code.size(), 16u);
	binary_quantize(v, 70, code.data());
	for (int i = 0; i < 128; i++) {
		bool bit = (code[i / 8] >> (i % 8)) & 1;
		EXPECT_EQ(bit, i < 70 && i % 3 == 0) << i;
	}
}

TEST(Metric, StoredSizes)
{
	EXPECT_EQ(vector_bytes(Metric::L2, 784), 3136u);
	EXPECT_EQ(vector_bytes(Metric::Hamming, 256), 32u);
	EXPECT_EQ(vector_bytes(Metric::Hamming, 257), 33u);
	EXPECT_EQ(binary_code_bytes(784), 104u);
}

} // namespace
} // namespace hannoy
