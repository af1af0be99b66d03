#pragma once

// Access log: one line per request, JSON (default) or Apache common format.
//
// Threading: an AccessLogSink (the open file) is shared by all workers of a config snapshot; each
// worker appends lines to its own AccessLogBuffer and flushes it with write(2) of whole lines, so
// workers never share a lock and lines never interleave. Buffers flush when they grow past a few
// KiB, on the worker's periodic tick, and when the worker stops.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace tessera::proxy {

struct AccessRecord {
  int64_t time_us = 0;  // wall clock, microseconds since the epoch
  std::string_view client;
  std::string_view method;
  std::string_view path;
  int status = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t duration_us = 0;
  std::string_view upstream;     // "host:port", or "" when answered by tessera itself
  std::string_view tls_version;  // "" on plain HTTP
  bool tls_resumed = false;
};

class AccessLogSink {
 public:
  enum class Format { kJson, kCommon };
  // target: "stdout", "stderr", "off" or a file path (opened for append). Throws on open failure.
  AccessLogSink(const std::string& target, const std::string& format);
  ~AccessLogSink();
  AccessLogSink(const AccessLogSink&) = delete;
  AccessLogSink& operator=(const AccessLogSink&) = delete;

  bool enabled() const { return fd_ >= 0; }
  Format format() const { return format_; }
  void write(std::string_view lines) const;  // whole lines only

 private:
  int fd_ = -1;
  bool owned_ = false;
  Format format_ = Format::kJson;
};

class AccessLogBuffer {
 public:
  void setSink(std::shared_ptr<const AccessLogSink> sink);
  void append(const AccessRecord& r);
  void flush();

 private:
  std::shared_ptr<const AccessLogSink> sink_;
  std::string buf_;
};

// Formats one record (with the trailing newline) into `out`.
void formatAccessJson(const AccessRecord& r, std::string& out);
void formatAccessCommon(const AccessRecord& r, std::string& out);

}  // namespace tessera::proxy
