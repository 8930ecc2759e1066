// The byte encoding of a worker's serialized state (CaseTracker,
// DimensionTable, AggregateShard): varints, zigzag signed varints,
// little-endian fixed 64-bit words and doubles, length-prefixed strings. Each
// of those formats is versioned on its own; this is only their alphabet. The
// decoder never trusts a length: every count is bounded by the input left,
// so corrupt or hostile bytes end in !ok(), never in a crash or a huge
// allocation.
//
//   StateEncoder e;
//   e.Varint(n);
//   e.String(id);
//   std::string bytes = e.Take();
//   StateDecoder d(bytes);
//   size_t count = d.Count(/*min_bytes_each=*/1);
//   if (!d.ok()) ...
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kpid {

class StateEncoder {
 public:
  void Raw(absl::string_view s) { absl::StrAppend(&out_, s); }
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void Signed(int64_t v) {
    const uint64_t u = static_cast<uint64_t>(v);
    Varint((u << 1) ^ (v < 0 ? ~uint64_t{0} : 0));  // zigzag
  }
  void Fixed64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void Double(double d) {
    uint64_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    Fixed64(bits);
  }
  void String(absl::string_view s) {
    Varint(s.size());
    Raw(s);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads what StateEncoder wrote; any malformed input sets !ok() and yields
// zeros from then on.
class StateDecoder {
 public:
  explicit StateDecoder(absl::string_view in) : in_(in) {}

  bool ok() const { return ok_; }
  size_t position() const { return pos_; }
  size_t remaining() const { return in_.size() - pos_; }

  bool Raw(absl::string_view expected) {
    if (remaining() < expected.size() || in_.substr(pos_, expected.size()) != expected) {
      return Fail();
    }
    pos_ += expected.size();
    return true;
  }
  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= in_.size()) return Fail();
      const uint8_t byte = static_cast<uint8_t>(in_[pos_++]);
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return v;
    }
    return Fail();
  }
  int64_t Signed() {
    const uint64_t u = Varint();
    return static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
  }
  uint64_t Fixed64() {
    if (remaining() < 8) return Fail();
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      v |= static_cast<uint64_t>(static_cast<uint8_t>(in_[pos_++])) << (8 * i);
    }
    return v;
  }
  double Double() {
    const uint64_t bits = Fixed64();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
  uint32_t U32() {
    const uint64_t v = Varint();
    if (v > std::numeric_limits<uint32_t>::max()) return Fail();
    return static_cast<uint32_t>(v);
  }
  // A count of items that each take at least `min_bytes_each` bytes: bounded
  // by the input left, so what a caller reserves for it is bounded too.
  size_t Count(size_t min_bytes_each = 1) {
    const uint64_t n = Varint();
    if (n > remaining() / min_bytes_each) return Fail();
    return static_cast<size_t>(n);
  }
  // A value that must be below `limit`.
  uint64_t Below(uint64_t limit) {
    const uint64_t v = Varint();
    if (v >= limit) return Fail();
    return v;
  }
  std::string String() {
    const size_t n = Count();
    if (!ok_) return {};
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  // Marks the input bad (a value out of its range).
  void Invalidate() { Fail(); }

 private:
  int Fail() {
    ok_ = false;
    pos_ = in_.size();
    return 0;
  }

  absl::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace kpid
