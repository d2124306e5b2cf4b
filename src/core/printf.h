#pragma once
// printf-style formatting into a std::string, for the cells of reports and
// tables (longeval, long-document PPL, KL divergence, scoreboards).
#include <string>

namespace kestrel {

std::string printf_string(const char* format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace kestrel
