// SHA-256 (FIPS 180-4) for the checks that need it (plugin libraries named by an engine manifest are hashed
// before they are loaded, as gflv2_deploy/engine/manifest.py does). Small and self-contained: no crypto
// library is a dependency of the runtime for one digest.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace gflv2 {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  // The digest as 64 lowercase hex characters (hashlib's hexdigest()); the object is spent afterwards.
  std::string hex_digest();

 private:
  void block(const uint8_t* chunk);
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  uint64_t total_ = 0;  // bytes
};

std::string sha256_hex(const void* data, std::size_t size);

// SHA-256 of a file's bytes and its size. gflv2::Error(kFileNotFound) when it cannot be opened or read.
struct FileDigest {
  std::string sha256;
  uint64_t bytes = 0;
};
FileDigest file_sha256(const std::string& path);

}  // namespace gflv2
