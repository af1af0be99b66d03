#pragma once

// The audit log: one JSON line per security event (a resumption refused for a device mismatch, a
// replayed pass, a bad signature), for SIEMs and for people. Configured by log.audit_log.
//
// Threading: shared by all workers of a snapshot. Each line is written with a single write(2) of
// one whole line. Values over kMaxValueBytes are cut (marked "...(N bytes)"), so that a line with
// the dozen fields an event has at most stays shorter than PIPE_BUF, and lines from several
// workers never mix on a pipe.
//
// Rate limit (log.audit_rate_limit). Clients decide how often some events happen (a stolen
// session presented from elsewhere, a bad signature), so a flood of them must not become a flood
// of writes on the workers or fill the disk. Lines beyond the limit (a token bucket: that many
// lines per second, in bursts of up to one second's worth) are not written but counted, by event.
// The counts go out as one "audit_suppressed" line, at most once a second (with the first event
// after that second) and when the log is closed (reload, shutdown). Nothing is dropped silently,
// and the metrics of each event still count every one.

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::proxy {

class AuditLog {
 public:
  using Field = std::pair<std::string_view, std::string_view>;
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kMaxValueBytes = 256;

  // target: "stderr", "off" or a file path (opened for append). Throws std::runtime_error.
  // rate_limit: lines per second, 0 for no limit. `now` is the clock (tests pass their own).
  AuditLog(const std::string& target, uint32_t rate_limit,
           std::function<Clock::time_point()> now = &Clock::now);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // {"time":"...","event":"<event>", "<key>":"<value>", ...}
  void record(std::string_view event, std::initializer_list<Field> fields) const;
  void recordAll(std::string_view event, const std::vector<Field>& fields) const;

 private:
  // Takes a token for `event`, or counts it as suppressed. Sets `summary` to the line that reports
  // the suppressed counts when it is due.
  bool admit(std::string_view event, std::string& summary) const;
  std::string summaryLine() const;  // with mu_ held; empties suppressed_
  void writeLine(const std::string& text) const;

  int fd_ = -1;
  bool owned_ = false;
  uint32_t rate_limit_ = 0;
  std::function<Clock::time_point()> now_;
  // The limiter's state changes on const calls: logging is not a change to the log's meaning.
  mutable std::mutex mu_;
  mutable double tokens_ = 0;
  mutable Clock::time_point refilled_;
  mutable Clock::time_point last_summary_;
  mutable std::map<std::string, uint64_t, std::less<>> suppressed_;
};

}  // namespace tessera::proxy
