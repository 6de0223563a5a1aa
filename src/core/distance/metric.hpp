/*
 * metric.hpp: what each metric means, independent of how it is computed.
 *
 * The index ranks with cheap monotone proxies (squared L2, 1 - dot of normalised vectors,
 * negative dot, popcount), while SQL operators return the true metric computed in double
 * precision. Both are defined here so the two can never disagree on order.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels.hpp"

namespace hannoy
{

/// Metric of an index. Values are stored on disk: never renumber.
enum class Metric : uint8_t {
	L2 = 1,           ///< euclidean, `<->`
	Cosine = 2,       ///< cosine distance 1 - cos, `<=>`
	InnerProduct = 3, ///< negative inner product, `<#>`
	L1 = 4,           ///< manhattan, `<+>`
	Hamming = 5,      ///< differing bits, `<~>` on bit strings
};

/// How vectors are represented for graph traversal. Stored on disk: never renumber.
enum class Quantization : uint8_t {
	None = 0,   ///< traverse with full-precision vectors
	Binary = 1, ///< traverse with one sign bit per dimension, re-rank with full vectors
};

/// How the elements of one stored vector are written. Recorded in every vector block (see
/// codec.hpp): never renumber.
enum class Encoding : uint8_t {
	Raw = 0, ///< the stored form as it is: floats, or a hamming index's bit string
	/// Floats that are all integers 0..255 (pixels, SIFT-like descriptors), one byte each.
	/// Lossless: every kernel gives bit for bit the result it gives on the floats, while a
	/// search reads a quarter of the memory.
	U8 = 1,
};

/// A stored vector: where it is and how its elements are written.
struct VectorRef {
	const uint8_t *data = nullptr;
	Encoding encoding = Encoding::Raw;
	explicit operator bool() const { return data != nullptr; }
};

/// Bytes of one stored vector of `raw_bytes` bytes in its raw form (`dims` elements).
inline size_t
encoded_bytes(Encoding encoding, size_t raw_bytes, uint32_t dims)
{
	return encoding == Encoding::U8 ? dims : raw_bytes;
}
/// True when every element is exactly an integer 0..255 (negative zero is not: it would not
/// come back with its sign).
bool fits_u8(const float *values, size_t n) noexcept;
/// Writes the U8 form of values that fit_u8().
void encode_u8(const float *values, size_t n, uint8_t *out) noexcept;
/// Writes the raw form of a stored vector (`raw_bytes` bytes, `dims` elements) into out.
void decode_vector(VectorRef v, size_t raw_bytes, uint32_t dims, uint8_t *out) noexcept;
/// Whether two stored vectors hold the same values (in whatever encodings).
bool same_vector(VectorRef a, VectorRef b, size_t raw_bytes, uint32_t dims) noexcept;

/// Largest number of float dimensions an index accepts.
constexpr uint32_t kMaxFloatDims = 16000;
/// Largest number of bits a hamming index accepts.
constexpr uint32_t kMaxBits = 64000;

const char *metric_name(Metric metric);
bool metric_from_u8(uint8_t value, Metric *out);

/// True for metrics over float vectors, false for bit strings.
inline bool
metric_uses_floats(Metric metric)
{
	return metric != Metric::Hamming;
}

/// Bytes of one stored full-precision element vector: 4 per float dimension, or the bit
/// string's bytes for hamming.
size_t vector_bytes(Metric metric, uint32_t dims);
/// Bytes of one binary code (one bit per dimension, padded to 64-bit words).
size_t binary_code_bytes(uint32_t dims);

/// Computes internal ranking distances for one index: smaller is closer. Cheap to copy.
class Space
{
public:
	Space(Metric metric, uint32_t dims);

	/// The space an inner-product graph is built in: the maximum inner product search reduces
	/// to euclidean search (Bachrach et al., 2014) by mapping every item x to
	/// [x, sqrt(M^2 - |x|^2)] with M the largest norm, and a query q to [q, 0], since then
	/// |q' - x'|^2 = |q|^2 + M^2 - 2 q.x ranks exactly like -q.x. Searches keep ranking by
	/// -q.x; only distances between items, used to build the graph, need the augmented
	/// coordinate, so the graph is a proper metric one. Items with a norm above M (inserted
	/// after the build raised nothing yet) get a zero extra coordinate.
	static Space augmented_inner_product(uint32_t dims, float max_norm);

	Metric metric() const { return metric_; }
	/// True when a vector's distance to itself is 0 (all but plain inner product), so that a
	/// distance of 0 means a duplicate.
	bool zero_is_duplicate() const { return metric_ != Metric::InnerProduct || augmented_; }
	uint32_t dims() const { return dims_; }
	/// Bytes of one stored vector.
	size_t bytes() const { return bytes_; }
	/// Bytes of one stored vector written in `encoding`.
	size_t bytes(Encoding encoding) const { return encoded_bytes(encoding, bytes_, dims_); }

	/// Ranking distance between two stored vectors (or a query, in raw form, and a stored
	/// vector), in any encodings: the same as between their raw forms.
	float distance(VectorRef a, VectorRef b) const
	{
		if (a.encoding == Encoding::Raw && b.encoding == Encoding::Raw)
			return distance(a.data, b.data);
		return encoded_distance(a, b);
	}

	/// Ranking distance between two vectors in raw form.
	float distance(const void *a, const void *b) const
	{
		switch (metric_) {
		case Metric::L2:
			return kernels_->l2_squared(static_cast<const float *>(a), static_cast<const float *>(b), dims_);
		case Metric::Cosine:
			return 1.0f - kernels_->dot(static_cast<const float *>(a), static_cast<const float *>(b), dims_);
		case Metric::InnerProduct:
			if (augmented_)
				return encoded_distance(VectorRef{static_cast<const uint8_t *>(a)},
										VectorRef{static_cast<const uint8_t *>(b)});
			return -kernels_->dot(static_cast<const float *>(a), static_cast<const float *>(b), dims_);
		case Metric::L1:
			return kernels_->l1(static_cast<const float *>(a), static_cast<const float *>(b), dims_);
		case Metric::Hamming:
			return static_cast<float>(
				kernels_->hamming(static_cast<const uint8_t *>(a), static_cast<const uint8_t *>(b), bytes_));
		}
		return 0.0f;
	}

	/// Dot product of two vectors in any encodings (as the inner-product kernels compute it).
	float dot(VectorRef a, VectorRef b) const;

private:
	enum class Sum { L2, Dot, L1 };
	float encoded_sum(Sum sum, VectorRef a, VectorRef b) const;
	float encoded_distance(VectorRef a, VectorRef b) const;

	Metric metric_;
	uint32_t dims_;
	size_t bytes_;
	const simd::Kernels *kernels_;
	bool augmented_ = false;
	float max_norm_sq_ = 0.0f;
};

/// Checks a float vector for an index of this metric and writes its stored form into `out`
/// (`vector_bytes` bytes): cosine vectors are normalised (a zero vector stays zero, so its
/// cosine distance to anything is 1). Throws InvalidInput on NaN or infinity.
void preprocess_floats(Metric metric, const float *in, uint32_t dims, float *out);

/// Writes the binary code of a float vector: bit i is 1 when in[i] > 0, least significant
/// bit first within little-endian 64-bit words, padding bits zero.
void binary_quantize(const float *in, uint32_t dims, uint8_t *out);
/// Binary code of (in - centroid): the sign of each coordinate relative to the data's mean,
/// which keeps the bits informative for data that is not centred on zero (pixel values,
/// non-negative features). A null centroid means zero.
void binary_quantize_centered(const float *in, const float *centroid, uint32_t dims, uint8_t *out);

/// Space of the binary codes of `dims`-dimensional vectors: hamming over whole 64-bit words.
inline Space
binary_code_space(uint32_t dims)
{
	return Space(Metric::Hamming, static_cast<uint32_t>(binary_code_bytes(dims) * 8));
}

/// Index of the first NaN or infinite element, or -1 when all are finite.
int64_t first_non_finite(const float *values, uint32_t dims) noexcept;
/// Throws InvalidInput naming the first non-finite element, if any.
void check_finite(const float *values, uint32_t dims);

/// What a vector's size counts: "dimensions" for real[], "bits" for bit strings.
inline const char *
dimension_noun(Metric metric)
{
	return metric_uses_floats(metric) ? "dimensions" : "bits";
}

/// Error text for a value of the wrong size in an index: "expected 3 dimensions, not 2"
/// (or "... bits ..." for bit strings).
std::string wrong_dimension_message(Metric metric, uint32_t expected, uint32_t got);
/// Error text for two values of different sizes, as the distance operators word it:
/// "different vector dimensions 3 and 2" (or "different bit lengths ...").
std::string different_dimensions_message(Metric metric, uint32_t a, uint32_t b);

/// True metric values, as SQL operators return them, computed in double precision.
double exact_l2(const float *a, const float *b, size_t n);
double exact_inner_product(const float *a, const float *b, size_t n);
/// 1 - cos(a, b), with cos clamped to [-1, 1]; 1 when either vector is zero.
double exact_cosine(const float *a, const float *b, size_t n);
double exact_l1(const float *a, const float *b, size_t n);
uint64_t exact_hamming(const uint8_t *a, const uint8_t *b, size_t nbytes);

} // namespace hannoy
