/*
 * bitmap.hpp: a small RAII wrapper over CRoaring's C API, and the validated reader of the
 * portable roaring serialisation used for graph links.
 *
 * CRoaring 0.2.66 cannot fully validate a damaged serialised bitmap, and a corrupt index
 * file must yield an error, never a crashed backend. So every blob read from disk is first
 * checked by validate_portable() (structure, sizes, sorted keys and values, cardinalities),
 * and hot paths decode ids straight from the bytes without allocating.
 */
#pragma once

#include <roaring/roaring.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hannoy
{

/// Owning wrapper of a roaring_bitmap_t (32-bit ids).
class Bitmap
{
public:
	Bitmap();
	~Bitmap();
	Bitmap(const Bitmap &other);
	Bitmap &operator=(const Bitmap &other);
	Bitmap(Bitmap &&other) noexcept;
	Bitmap &operator=(Bitmap &&other) noexcept;

	/// Builds from ids in any order.
	static Bitmap of(const uint32_t *ids, size_t n);
	/// Decodes a portable serialisation; throws Corrupted when invalid.
	static Bitmap decode(const void *data, size_t size);

	void add(uint32_t id) { roaring_bitmap_add(bitmap_, id); }
	void remove(uint32_t id) { roaring_bitmap_remove(bitmap_, id); }
	bool contains(uint32_t id) const { return roaring_bitmap_contains(bitmap_, id); }
	uint64_t cardinality() const { return roaring_bitmap_get_cardinality(bitmap_); }
	bool empty() const { return roaring_bitmap_is_empty(bitmap_); }
	void clear() { roaring_bitmap_clear(bitmap_); }
	/// this |= other
	void union_with(const Bitmap &other) { roaring_bitmap_or_inplace(bitmap_, other.bitmap_); }
	/// this -= other
	void subtract(const Bitmap &other) { roaring_bitmap_andnot_inplace(bitmap_, other.bitmap_); }
	bool intersects(const Bitmap &other) const { return roaring_bitmap_intersect(bitmap_, other.bitmap_); }

	/// Ids in increasing order.
	std::vector<uint32_t> to_vector() const;
	/// Portable serialisation (the cross-language RoaringFormatSpec).
	std::string encode() const;

	const roaring_bitmap_t *raw() const { return bitmap_; }

private:
	explicit Bitmap(roaring_bitmap_t *bitmap) : bitmap_(bitmap) {}
	roaring_bitmap_t *bitmap_;
};

/// Checks that `data` is a well-formed portable roaring bitmap of exactly `size` bytes.
/// On success returns true and sets *cardinality; on failure sets *why.
bool validate_portable(const void *data, size_t size, uint64_t *cardinality, const char **why);

/// Appends the ids of a portable roaring bitmap, in increasing order, to `out`.
/// Throws Corrupted (naming `what`) when the bytes are not a valid bitmap.
void decode_portable_ids(const void *data, size_t size, std::vector<uint32_t> &out, const char *what);

/// Portable serialisation of a sorted, duplicate-free id list (array and bitset containers,
/// byte-identical to CRoaring's portable serialisation of the same set without runs).
std::string encode_portable_ids(const uint32_t *sorted_ids, size_t n);

} // namespace hannoy
