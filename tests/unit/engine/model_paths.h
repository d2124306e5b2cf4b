#pragma once
// Where the engine tests find the real models (fetched by scripts/fetch_models.sh).
#include <cstdlib>
#include <filesystem>
#include <string>

namespace kestrel::testing {

inline std::filesystem::path cache_dir() {
  if (const char* c = std::getenv("KESTREL_CACHE"); c && *c) return c;
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : ".") / ".cache" / "kestrel";
}

inline std::filesystem::path smollm2_path() { return cache_dir() / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"; }
inline std::filesystem::path qwen2_path() {
  return cache_dir() / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
}
inline std::filesystem::path qwen2_05b_path() { return cache_dir() / "models" / "qwen2.5-coder-0.5b-instruct.gguf"; }
inline std::filesystem::path gemma3_path() { return cache_dir() / "models" / "gemma-3-270m-q4_k_m.gguf"; }
inline std::filesystem::path golden_dir() { return std::filesystem::path(KESTREL_SOURCE_DIR) / "tests" / "golden"; }

}  // namespace kestrel::testing
