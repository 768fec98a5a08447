// gflv2::Error: the one exception type of the C++ API; its status() is the C ABI status code.
#pragma once

#include <stdexcept>
#include <string>

#include "gflv2/gflv2.h"

namespace gflv2 {

enum class Status {
  kInvalidArgument = GFLV2_E_INVALID_ARGUMENT,
  kFileNotFound = GFLV2_E_FILE_NOT_FOUND,
  kModel = GFLV2_E_MODEL,
  kContract = GFLV2_E_CONTRACT,
  kEngineMismatch = GFLV2_E_ENGINE_MISMATCH,
  kImage = GFLV2_E_IMAGE,
  kBackend = GFLV2_E_BACKEND,
  kUnsupported = GFLV2_E_UNSUPPORTED,
  kInternal = GFLV2_E_INTERNAL,
};

// One line saying what is wrong and what to do; status() says which kind of problem it is.
class GFLV2_API Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  Status status() const noexcept { return status_; }

 private:
  Status status_;
};

}  // namespace gflv2
