/*
 * metric.cpp: metric semantics: preprocessing of stored vectors, binary codes and the exact
 * double-precision distances returned to SQL.
 */
#include "metric.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "../error.hpp"

#include "../pure_cpp.hpp"

namespace hannoy
{

const char *
metric_name(Metric metric)
{
	switch (metric) {
	case Metric::L2:
		return "euclidean";
	case Metric::Cosine:
		return "cosine";
	case Metric::InnerProduct:
		return "inner product";
	case Metric::L1:
		return "manhattan";
	case Metric::Hamming:
		return "hamming";
	}
	return "unknown";
}

bool
metric_from_u8(uint8_t value, Metric *out)
{
	switch (value) {
	case static_cast<uint8_t>(Metric::L2):
	case static_cast<uint8_t>(Metric::Cosine):
	case static_cast<uint8_t>(Metric::InnerProduct):
	case static_cast<uint8_t>(Metric::L1):
	case static_cast<uint8_t>(Metric::Hamming):
		*out = static_cast<Metric>(value);
		return true;
	default:
		return false;
	}
}

size_t
vector_bytes(Metric metric, uint32_t dims)
{
	if (metric == Metric::Hamming)
		return (static_cast<size_t>(dims) + 7) / 8;
	return static_cast<size_t>(dims) * sizeof(float);
}

size_t
binary_code_bytes(uint32_t dims)
{
	return (static_cast<size_t>(dims) + 63) / 64 * 8;
}

Space::Space(Metric metric, uint32_t dims)
	: metric_(metric), dims_(dims), bytes_(vector_bytes(metric, dims)), kernels_(&simd::active_kernels())
{
}

int64_t
first_non_finite(const float *values, uint32_t dims) noexcept
{
	/* Every distance operator call checks both arguments: test blocks of 16 with a branch-free
	 * exponent test the compiler vectorises, and look for the element only in a bad block. */
	constexpr uint32_t kBlock = 16;
	constexpr uint32_t kExponent = 0x7f800000u;
	uint32_t start = 0;
	for (; start + kBlock <= dims; start += kBlock) {
		uint32_t bits[kBlock];
		std::memcpy(bits, values + start, sizeof(bits));
		uint32_t bad = 0;
		for (uint32_t i = 0; i < kBlock; i++)
			bad |= static_cast<uint32_t>((bits[i] & kExponent) == kExponent);
		if (bad != 0)
			break;
	}
	for (uint32_t i = start; i < dims; i++)
		if (!std::isfinite(values[i]))
			return i;
	return -1;
}

Space
Space::augmented_inner_product(uint32_t dims, float max_norm)
{
	Space space(Metric::InnerProduct, dims);
	space.augmented_ = true;
	space.max_norm_sq_ = max_norm * max_norm;
	return space;
}

bool
fits_u8(const float *values, size_t n) noexcept
{
	for (size_t i = 0; i < n; i++) {
		float v = values[i];
		/* The test on the bits rejects negative zero, which compares equal to 0. */
		if (!(v >= 0.0f && v <= 255.0f) || v != static_cast<float>(static_cast<uint8_t>(v)) ||
			std::signbit(v))
			return false;
	}
	return true;
}

void
encode_u8(const float *values, size_t n, uint8_t *out) noexcept
{
	for (size_t i = 0; i < n; i++)
		out[i] = static_cast<uint8_t>(values[i]);
}

void
decode_vector(VectorRef v, size_t raw_bytes, uint32_t dims, uint8_t *out) noexcept
{
	if (v.encoding == Encoding::Raw) {
		std::memcpy(out, v.data, raw_bytes);
		return;
	}
	for (uint32_t i = 0; i < dims; i++) {
		float f = static_cast<float>(v.data[i]);
		std::memcpy(out + static_cast<size_t>(i) * sizeof(float), &f, sizeof(float));
	}
}

bool
same_vector(VectorRef a, VectorRef b, size_t raw_bytes, uint32_t dims) noexcept
{
	if (a.encoding == b.encoding)
		return std::memcmp(a.data, b.data, encoded_bytes(a.encoding, raw_bytes, dims)) == 0;
	/* One U8, one raw float vector: equal when the floats are exactly those bytes. */
	const VectorRef &bytes = a.encoding == Encoding::U8 ? a : b;
	const VectorRef &floats = a.encoding == Encoding::U8 ? b : a;
	for (uint32_t i = 0; i < dims; i++) {
		float f;
		std::memcpy(&f, floats.data + static_cast<size_t>(i) * sizeof(float), sizeof(float));
		if (std::signbit(f) || f != static_cast<float>(bytes.data[i]))
			return false;
	}
	return true;
}

float
Space::encoded_sum(Sum sum, VectorRef a, VectorRef b) const
{
	/* Every kernel is symmetric: put the byte-encoded operand second. */
	if (a.encoding == Encoding::U8 && b.encoding != Encoding::U8)
		std::swap(a, b);
	const auto *fa = reinterpret_cast<const float *>(a.data);
	if (a.encoding == Encoding::Raw && b.encoding == Encoding::Raw) {
		const auto *fb = reinterpret_cast<const float *>(b.data);
		switch (sum) {
		case Sum::L2:
			return kernels_->l2_squared(fa, fb, dims_);
		case Sum::Dot:
			return kernels_->dot(fa, fb, dims_);
		case Sum::L1:
			return kernels_->l1(fa, fb, dims_);
		}
	}
	if (a.encoding == Encoding::Raw) {
		switch (sum) {
		case Sum::L2:
			return kernels_->l2_squared_fb(fa, b.data, dims_);
		case Sum::Dot:
			return kernels_->dot_fb(fa, b.data, dims_);
		case Sum::L1:
			return kernels_->l1_fb(fa, b.data, dims_);
		}
	}
	switch (sum) {
	case Sum::L2:
		return kernels_->l2_squared_bb(a.data, b.data, dims_);
	case Sum::Dot:
		return kernels_->dot_bb(a.data, b.data, dims_);
	case Sum::L1:
		return kernels_->l1_bb(a.data, b.data, dims_);
	}
	return 0.0f;
}

float
Space::dot(VectorRef a, VectorRef b) const
{
	return encoded_sum(Sum::Dot, a, b);
}

float
Space::encoded_distance(VectorRef a, VectorRef b) const
{
	switch (metric_) {
	case Metric::L2:
		return encoded_sum(Sum::L2, a, b);
	case Metric::Cosine:
		return 1.0f - encoded_sum(Sum::Dot, a, b);
	case Metric::InnerProduct:
		if (augmented_) {
			float extra_a = std::sqrt(std::max(0.0f, max_norm_sq_ - encoded_sum(Sum::Dot, a, a)));
			float extra_b = std::sqrt(std::max(0.0f, max_norm_sq_ - encoded_sum(Sum::Dot, b, b)));
			float d = extra_a - extra_b;
			return encoded_sum(Sum::L2, a, b) + d * d;
		}
		return -encoded_sum(Sum::Dot, a, b);
	case Metric::L1:
		return encoded_sum(Sum::L1, a, b);
	case Metric::Hamming:
		break;
	}
	throw Error(ErrorCode::Internal, "hannoy: encoded vector in a hamming index");
}

void
check_finite(const float *values, uint32_t dims)
{
	int64_t bad = first_non_finite(values, dims);
	if (bad >= 0) {
		bool nan = std::isnan(values[bad]);
		throw Error(ErrorCode::InvalidInput,
					nan ? "NaN not allowed in vector" : "infinite value not allowed in vector",
					format("Element %lld (counting from 1) is %s.", static_cast<long long>(bad + 1),
						   nan ? "NaN" : "infinite"));
	}
}

void
preprocess_floats(Metric metric, const float *in, uint32_t dims, float *out)
{
	check_finite(in, dims);
	if (metric != Metric::Cosine) {
		if (out != in)
			std::memcpy(out, in, static_cast<size_t>(dims) * sizeof(float));
		return;
	}
	double norm_sq = 0.0;
	for (uint32_t i = 0; i < dims; i++)
		norm_sq += static_cast<double>(in[i]) * in[i];
	if (norm_sq == 0.0) {
		std::memset(out, 0, static_cast<size_t>(dims) * sizeof(float));
		return;
	}
	double inv = 1.0 / std::sqrt(norm_sq);
	for (uint32_t i = 0; i < dims; i++)
		out[i] = static_cast<float>(in[i] * inv);
}

void
binary_quantize(const float *in, uint32_t dims, uint8_t *out)
{
	size_t bytes = binary_code_bytes(dims);
	std::memset(out, 0, bytes);
	for (uint32_t i = 0; i < dims; i++) {
		if (in[i] > 0.0f)
			out[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
	}
}

std::string
wrong_dimension_message(Metric metric, uint32_t expected, uint32_t got)
{
	return format("expected %u %s, not %u", expected, dimension_noun(metric), got);
}

std::string
different_dimensions_message(Metric metric, uint32_t a, uint32_t b)
{
	return format(metric_uses_floats(metric) ? "different vector dimensions %u and %u"
											 : "different bit lengths %u and %u",
				  a, b);
}

void
binary_quantize_centered(const float *in, const float *centroid, uint32_t dims, uint8_t *out)
{
	if (centroid == nullptr) {
		binary_quantize(in, dims, out);
		return;
	}
	size_t bytes = binary_code_bytes(dims);
	std::memset(out, 0, bytes);
	for (uint32_t i = 0; i < dims; i++) {
		if (in[i] > centroid[i])
			out[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
	}
}

double
exact_l2(const float *a, const float *b, size_t n)
{
	double sum = 0.0;
	for (size_t i = 0; i < n; i++) {
		double d = static_cast<double>(a[i]) - b[i];
		sum += d * d;
	}
	return std::sqrt(sum);
}

double
exact_inner_product(const float *a, const float *b, size_t n)
{
	double sum = 0.0;
	for (size_t i = 0; i < n; i++)
		sum += static_cast<double>(a[i]) * b[i];
	return sum;
}

double
exact_cosine(const float *a, const float *b, size_t n)
{
	double dot = 0.0, na = 0.0, nb = 0.0;
	for (size_t i = 0; i < n; i++) {
		dot += static_cast<double>(a[i]) * b[i];
		na += static_cast<double>(a[i]) * a[i];
		nb += static_cast<double>(b[i]) * b[i];
	}
	if (na == 0.0 || nb == 0.0)
		return 1.0;
	double cos = dot / std::sqrt(na * nb);
	if (cos > 1.0)
		cos = 1.0;
	else if (cos < -1.0)
		cos = -1.0;
	return 1.0 - cos;
}

double
exact_l1(const float *a, const float *b, size_t n)
{
	double sum = 0.0;
	for (size_t i = 0; i < n; i++)
		sum += std::fabs(static_cast<double>(a[i]) - b[i]);
	return sum;
}

uint64_t
exact_hamming(const uint8_t *a, const uint8_t *b, size_t nbytes)
{
	uint64_t count = 0;
	for (size_t i = 0; i < nbytes; i++)
		count += static_cast<uint64_t>(__builtin_popcount(static_cast<unsigned>(a[i] ^ b[i])));
	return count;
}

} // namespace hannoy
