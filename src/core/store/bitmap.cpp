/*
 * bitmap.cpp: CRoaring wrapper and the portable-format validator/decoder/encoder.
 *
 * Portable format (RoaringFormatSpec), all integers little-endian:
 *   cookie u32: 12346 (no run containers) followed by a u32 container count, or
 *               12347 | (count - 1) << 16 followed by a run-flag bitset of (count + 7) / 8 bytes;
 *   per container: u16 key (high 16 bits), u16 cardinality - 1;
 *   per container: u32 byte offset of its data, present unless the cookie is 12347 and
 *                  count < 4;
 *   container data: run (u16 run count, then (u16 start, u16 length - 1) pairs),
 *                   array (cardinality sorted u16 values) when cardinality <= 4096,
 *                   or bitset (8192 bytes).
 */
#include "bitmap.hpp"

#include <cstring>

#include "../error.hpp"

#include "../pure_cpp.hpp"

namespace hannoy
{

namespace
{

constexpr uint32_t kCookieNoRuns = 12346;
constexpr uint32_t kCookieRuns = 12347;
constexpr uint32_t kNoOffsetThreshold = 4;
constexpr uint32_t kMaxArrayCardinality = 4096;
constexpr size_t kBitsetBytes = 8192;

uint16_t
load_u16(const uint8_t *p)
{
	return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

uint32_t
load_u32(const uint8_t *p)
{
	return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
		   (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

void
store_u16(std::string &out, uint16_t v)
{
	out.push_back(static_cast<char>(v & 0xff));
	out.push_back(static_cast<char>(v >> 8));
}

void
store_u32(std::string &out, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

roaring_bitmap_t *
checked(roaring_bitmap_t *bitmap)
{
	if (bitmap == nullptr)
		throw std::bad_alloc();
	return bitmap;
}

/*
 * Walks a portable bitmap. With `out` null it only validates; otherwise it also appends
 * the ids. Returns nullptr on success or a static reason.
 */
const char *
walk_portable(const uint8_t *data, size_t size, uint64_t *cardinality, std::vector<uint32_t> *out)
{
	size_t pos = 0;
	if (size < 4)
		return "truncated cookie";
	uint32_t cookie = load_u32(data);
	pos = 4;
	uint32_t count;
	const uint8_t *run_flags = nullptr;
	bool has_offsets;
	if (cookie == kCookieNoRuns) {
		if (size < 8)
			return "truncated container count";
		count = load_u32(data + 4);
		pos = 8;
		has_offsets = true;
	} else if ((cookie & 0xffff) == kCookieRuns) {
		count = (cookie >> 16) + 1;
		size_t flag_bytes = (count + 7) / 8;
		if (size - pos < flag_bytes)
			return "truncated run flags";
		run_flags = data + pos;
		pos += flag_bytes;
		has_offsets = count >= kNoOffsetThreshold;
	} else {
		return "bad cookie";
	}
	if (count > 65536)
		return "too many containers";
	size_t header_bytes = static_cast<size_t>(count) * 4;
	if (size - pos < header_bytes)
		return "truncated key header";
	const uint8_t *keys = data + pos;
	pos += header_bytes;
	if (has_offsets) {
		if (size - pos < header_bytes)
			return "truncated offset header";
		pos += header_bytes;
	}
	uint64_t total = 0;
	int64_t previous_key = -1;
	for (uint32_t c = 0; c < count; c++) {
		uint32_t key = load_u16(keys + 4 * c);
		uint32_t card = static_cast<uint32_t>(load_u16(keys + 4 * c + 2)) + 1;
		if (static_cast<int64_t>(key) <= previous_key)
			return "container keys not increasing";
		previous_key = key;
		uint32_t high = key << 16;
		bool is_run = run_flags != nullptr && (run_flags[c / 8] >> (c % 8)) & 1;
		if (is_run) {
			if (size - pos < 2)
				return "truncated run container";
			uint32_t runs = load_u16(data + pos);
			pos += 2;
			if (size - pos < static_cast<size_t>(runs) * 4)
				return "truncated run container";
			uint64_t seen = 0;
			int64_t next_allowed = 0;
			for (uint32_t r = 0; r < runs; r++) {
				uint32_t start = load_u16(data + pos + 4 * r);
				uint32_t length = static_cast<uint32_t>(load_u16(data + pos + 4 * r + 2)) + 1;
				if (static_cast<int64_t>(start) < next_allowed || start + length > 65536)
					return "run container runs overlap or overflow";
				next_allowed = static_cast<int64_t>(start) + length + 1;
				seen += length;
				if (out != nullptr)
					for (uint32_t v = start; v < start + length; v++)
						out->push_back(high | v);
			}
			if (seen != card)
				return "run container cardinality mismatch";
			pos += static_cast<size_t>(runs) * 4;
		} else if (card <= kMaxArrayCardinality) {
			size_t bytes = static_cast<size_t>(card) * 2;
			if (size - pos < bytes)
				return "truncated array container";
			int64_t previous = -1;
			for (uint32_t i = 0; i < card; i++) {
				uint32_t v = load_u16(data + pos + 2 * i);
				if (static_cast<int64_t>(v) <= previous)
					return "array container values not increasing";
				previous = v;
				if (out != nullptr)
					out->push_back(high | v);
			}
			pos += bytes;
		} else {
			if (size - pos < kBitsetBytes)
				return "truncated bitset container";
			uint64_t seen = 0;
			for (size_t w = 0; w < kBitsetBytes / 8; w++) {
				uint64_t word;
				std::memcpy(&word, data + pos + 8 * w, 8);
				seen += static_cast<uint64_t>(__builtin_popcountll(word));
				if (out != nullptr) {
					while (word != 0) {
						uint32_t bit = static_cast<uint32_t>(__builtin_ctzll(word));
						out->push_back(high | static_cast<uint32_t>(w * 64 + bit));
						word &= word - 1;
					}
				}
			}
			if (seen != card)
				return "bitset container cardinality mismatch";
			pos += kBitsetBytes;
		}
		total += card;
	}
	if (pos != size)
		return "trailing bytes";
	*cardinality = total;
	return nullptr;
}

} // namespace

Bitmap::Bitmap() : bitmap_(checked(roaring_bitmap_create())) {}

Bitmap::~Bitmap()
{
	if (bitmap_ != nullptr)
		roaring_bitmap_free(bitmap_);
}

Bitmap::Bitmap(const Bitmap &other) : bitmap_(checked(roaring_bitmap_copy(other.bitmap_))) {}

Bitmap &
Bitmap::operator=(const Bitmap &other)
{
	if (this != &other) {
		roaring_bitmap_t *copy = checked(roaring_bitmap_copy(other.bitmap_));
		roaring_bitmap_free(bitmap_);
		bitmap_ = copy;
	}
	return *this;
}

Bitmap::Bitmap(Bitmap &&other) noexcept : bitmap_(other.bitmap_)
{
	other.bitmap_ = nullptr;
}

Bitmap &
Bitmap::operator=(Bitmap &&other) noexcept
{
	if (this != &other) {
		if (bitmap_ != nullptr)
			roaring_bitmap_free(bitmap_);
		bitmap_ = other.bitmap_;
		other.bitmap_ = nullptr;
	}
	return *this;
}

Bitmap
Bitmap::of(const uint32_t *ids, size_t n)
{
	return Bitmap(checked(roaring_bitmap_of_ptr(n, ids)));
}

Bitmap
Bitmap::decode(const void *data, size_t size)
{
	uint64_t cardinality;
	const char *why;
	if (!validate_portable(data, size, &cardinality, &why))
		throw Error(ErrorCode::Corrupted, format("invalid bitmap in hannoy index: %s", why), "",
					"REINDEX the index.");
	roaring_bitmap_t *bitmap =
		roaring_bitmap_portable_deserialize_safe(static_cast<const char *>(data), size);
	if (bitmap == nullptr)
		throw Error(ErrorCode::Corrupted, "invalid bitmap in hannoy index", "", "REINDEX the index.");
	return Bitmap(bitmap);
}

std::vector<uint32_t>
Bitmap::to_vector() const
{
	std::vector<uint32_t> ids(cardinality());
	roaring_bitmap_to_uint32_array(bitmap_, ids.data());
	return ids;
}

std::string
Bitmap::encode() const
{
	std::string out(roaring_bitmap_portable_size_in_bytes(bitmap_), '\0');
	size_t written = roaring_bitmap_portable_serialize(bitmap_, out.data());
	out.resize(written);
	return out;
}

bool
validate_portable(const void *data, size_t size, uint64_t *cardinality, const char **why)
{
	const char *reason = walk_portable(static_cast<const uint8_t *>(data), size, cardinality, nullptr);
	if (reason != nullptr) {
		*why = reason;
		return false;
	}
	return true;
}

void
decode_portable_ids(const void *data, size_t size, std::vector<uint32_t> &out, const char *what)
{
	uint64_t cardinality;
	size_t before = out.size();
	const char *reason = walk_portable(static_cast<const uint8_t *>(data), size, &cardinality, &out);
	if (reason != nullptr) {
		out.resize(before);
		throw Error(ErrorCode::Corrupted, format("invalid %s bitmap in hannoy index: %s", what, reason), "",
					"REINDEX the index.");
	}
}

std::string
encode_portable_ids(const uint32_t *ids, size_t n)
{
	/* Group by the high 16 bits; each group becomes an array or a bitset container. */
	std::vector<std::pair<size_t, size_t>> groups;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && (ids[j] >> 16) == (ids[i] >> 16))
			j++;
		groups.emplace_back(i, j);
		i = j;
	}
	std::string out;
	store_u32(out, kCookieNoRuns);
	store_u32(out, static_cast<uint32_t>(groups.size()));
	for (const auto &g : groups) {
		store_u16(out, static_cast<uint16_t>(ids[g.first] >> 16));
		store_u16(out, static_cast<uint16_t>(g.second - g.first - 1));
	}
	uint32_t offset = static_cast<uint32_t>(8 + groups.size() * 8);
	for (const auto &g : groups) {
		store_u32(out, offset);
		size_t card = g.second - g.first;
		offset += static_cast<uint32_t>(card <= kMaxArrayCardinality ? card * 2 : kBitsetBytes);
	}
	for (const auto &g : groups) {
		size_t card = g.second - g.first;
		if (card <= kMaxArrayCardinality) {
			for (size_t i = g.first; i < g.second; i++)
				store_u16(out, static_cast<uint16_t>(ids[i] & 0xffff));
		} else {
			std::string bits(kBitsetBytes, '\0');
			for (size_t i = g.first; i < g.second; i++) {
				uint32_t low = ids[i] & 0xffff;
				bits[low / 8] = static_cast<char>(bits[low / 8] | (1 << (low % 8)));
			}
			out += bits;
		}
	}
	return out;
}

} // namespace hannoy
