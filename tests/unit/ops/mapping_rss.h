#pragma once
// The resident bytes of one mapping in this process: its /proc/self/smaps
// entry's Rss (mincore would report the page cache, which keeps the file).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace kestrel::test {

inline long mapping_resident_bytes(const void* start_address) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  char start[32];
  std::snprintf(start, sizeof(start), "%lx-", reinterpret_cast<unsigned long>(start_address));
  bool in_entry = false;
  while (std::getline(smaps, line)) {
    if (line.rfind(start, 0) == 0) in_entry = true;
    if (in_entry && line.rfind("Rss:", 0) == 0) return std::stol(line.substr(4)) * 1024L;
  }
  ADD_FAILURE() << "no smaps entry for the mapping";
  return -1L;
}

// Writes bytes to a new file under the test temp folder; returns its path.
inline std::string write_temp_file(const std::string& name, const std::string_view bytes) {
  const std::string path = ::testing::TempDir() + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  EXPECT_NE(f, nullptr);
  if (f == nullptr) return path;
  EXPECT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
  return path;
}

}  // namespace kestrel::test
