#pragma once
// Resident memory of this process, read from /proc/self/status (Linux). The
// figures include the mapped model weights once their pages are touched, which
// is what a user of the machine sees (and what llama.cpp users quote).
#include <cstddef>

namespace kestrel {

// VmHWM: the peak resident set size since start (or since the last reset), in
// bytes. 0 when /proc is unavailable.
size_t peak_rss_bytes();

// VmRSS: the current resident set size in bytes. 0 when /proc is unavailable.
size_t current_rss_bytes();

// Resets the peak to the current RSS (writes "5" to /proc/self/clear_refs,
// Linux >= 4.0), so that a later peak_rss_bytes() measures one piece of work.
// Returns false when the kernel refuses; the peak then stays process-wide.
bool reset_peak_rss();

}  // namespace kestrel
