#pragma once

// The audit log: one JSON line per security event (a resumption refused for a device mismatch, a
// replayed pass, a bad signature), for SIEMs and for people. Configured by log.audit_log.
//
// Threading: shared by all workers of a snapshot. Events are rare, so each is written with a single
// write(2) of one whole line (shorter than PIPE_BUF, so lines from several workers never mix).

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::proxy {

class AuditLog {
 public:
  using Field = std::pair<std::string_view, std::string_view>;

  // target: "stderr", "off" or a file path (opened for append). Throws std::runtime_error.
  explicit AuditLog(const std::string& target);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // {"time":"...","event":"<event>", "<key>":"<value>", ...}
  void record(std::string_view event, std::initializer_list<Field> fields) const;
  void recordAll(std::string_view event, const std::vector<Field>& fields) const;

 private:
  int fd_ = -1;
  bool owned_ = false;
};

}  // namespace tessera::proxy
