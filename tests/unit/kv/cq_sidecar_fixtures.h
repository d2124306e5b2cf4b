#pragma once
// What the CQ sidecar tests share (tests/unit/kv/cq_test.cpp,
// cq_query_metric_test.cpp): a small model's identity, a temporary file path,
// and the error a load gives.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gguf/gguf.h"
#include "kv/cq_sidecar.h"
#include "unit/error_text.h"

namespace kestrel::testing {

inline CqModelInfo small_cq_model() { return CqModelInfo{"llama", 2, 3, 16, 16, 123456, 0xABCDEF0123456789ull}; }

inline std::string cq_temp_path(const std::string& tag) {
  return ::testing::TempDir() + "kestrel_cq_" + tag + "_" + std::to_string(::getpid()) + ".gguf";
}

// The message load_cq_codebooks throws for the file `w` writes (empty if it loads).
inline std::string cq_load_error(const gguf::Writer& w, const CqModelInfo& m, const std::string& tag) {
  const std::string path = cq_temp_path(tag);
  w.write(path);
  const std::string e = error_of([&] { load_cq_codebooks(path, m); });
  std::filesystem::remove(path);
  return e;
}

}  // namespace kestrel::testing
