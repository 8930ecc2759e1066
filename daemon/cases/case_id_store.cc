#include "daemon/cases/case_id_store.h"

namespace kpid::cases {

CaseIdStore::CaseIdStore() : free_(kClasses, nullptr) {}

CaseIdStore::~CaseIdStore() = default;

void CaseIdStore::Assign(StoredId* id, absl::string_view value) {
  if (value.size() <= StoredId::kInline) {
    if (!value.empty()) std::memcpy(id->bytes, value.data(), value.size());
    id->tag = static_cast<uint8_t>(value.size());
    return;
  }
  // Ids are bounded by the message size, itself bounded by Kafka's limits.
  const uint32_t size = static_cast<uint32_t>(value.size());
  char* data = Allocate(size);
  std::memcpy(data, value.data(), size);
  std::memcpy(id->bytes, &data, sizeof data);
  std::memcpy(id->bytes + sizeof data, &size, sizeof size);
  id->tag = StoredId::kOutOfLine;
}

void CaseIdStore::Release(StoredId* id) {
  if (id->tag == StoredId::kOutOfLine) {
    const absl::string_view v = View(*id);
    Free(const_cast<char*>(v.data()), v.size());
  }
  id->tag = 0;
}

char* CaseIdStore::Allocate(size_t size) {
  if (size > kMaxPooled) return new char[size];
  const size_t c = ClassOf(size);
  if (char* block = free_[c]) {
    std::memcpy(&free_[c], block, sizeof(char*));
    return block;
  }
  const size_t block_bytes = 8 * (c + 1);
  if (bump_left_ < block_bytes) {
    // The rest of the page (< 4 KiB) is left unused.
    pages_.push_back(std::make_unique_for_overwrite<char[]>(kPageBytes));
    bump_ = pages_.back().get();
    bump_left_ = kPageBytes;
  }
  char* block = bump_;
  bump_ += block_bytes;
  bump_left_ -= block_bytes;
  return block;
}

void CaseIdStore::Free(char* block, size_t size) {
  if (size > kMaxPooled) {
    delete[] block;
    return;
  }
  const size_t c = ClassOf(size);
  std::memcpy(block, &free_[c], sizeof(char*));
  free_[c] = block;
}

}  // namespace kpid::cases
