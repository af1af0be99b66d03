#include "proxy/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace tessera::proxy {

namespace {

std::string nowIso() {
  auto now = std::chrono::system_clock::now();
  time_t secs = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof(buf) - n, ".%03lldZ", static_cast<long long>(ms));
  return buf;
}

}  // namespace

AuditLog::AuditLog(const std::string& target, uint32_t rate_limit,
                   std::function<Clock::time_point()> now)
    : rate_limit_(rate_limit), now_(std::move(now)) {
  tokens_ = rate_limit_;
  refilled_ = last_summary_ = now_();
  if (target == "off") return;
  if (target == "stderr") {
    fd_ = STDERR_FILENO;
    return;
  }
  fd_ = ::open(target.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0) throw std::runtime_error("cannot open " + target + ": " + strerror(errno));
  owned_ = true;
}

AuditLog::~AuditLog() {
  if (fd_ >= 0 && !suppressed_.empty()) writeLine(summaryLine());
  if (owned_) ::close(fd_);
}

void AuditLog::record(std::string_view event, std::initializer_list<Field> fields) const {
  recordAll(event, std::vector<Field>(fields));
}

void AuditLog::recordAll(std::string_view event, const std::vector<Field>& fields) const {
  if (fd_ < 0) return;
  std::string summary;
  bool admitted = admit(event, summary);
  if (!summary.empty()) writeLine(summary);
  if (!admitted) return;
  nlohmann::json line;
  line["time"] = nowIso();
  line["event"] = event;
  for (const auto& [key, value] : fields) {
    // Values come from clients too (a User-Agent in a device fingerprint, a user header): cut
    // them so that a line stays one atomic write on a pipe (see the header).
    if (value.size() <= kMaxValueBytes) {
      line[std::string(key)] = value;
    } else {
      line[std::string(key)] = std::string(value.substr(0, kMaxValueBytes)) + "...(" +
                               std::to_string(value.size()) + " bytes)";
    }
  }
  // Client-controlled text (a header, a path) must not break the line: replace bad UTF-8.
  writeLine(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

bool AuditLog::admit(std::string_view event, std::string& summary) const {
  if (rate_limit_ == 0) return true;
  std::lock_guard<std::mutex> lock(mu_);
  Clock::time_point now = now_();
  double elapsed = std::chrono::duration<double>(now - refilled_).count();
  tokens_ = std::min<double>(rate_limit_, tokens_ + elapsed * rate_limit_);
  refilled_ = now;
  bool admitted = tokens_ >= 1;
  if (admitted) {
    tokens_ -= 1;
  } else {
    auto it = suppressed_.find(event);
    if (it == suppressed_.end()) it = suppressed_.emplace(std::string(event), 0).first;
    ++it->second;
  }
  if (!suppressed_.empty() && now - last_summary_ >= std::chrono::seconds(1)) {
    summary = summaryLine();
    last_summary_ = now;
  }
  return admitted;
}

std::string AuditLog::summaryLine() const {
  nlohmann::json line;
  line["time"] = nowIso();
  line["event"] = "audit_suppressed";
  line["reason"] =
      "more than " + std::to_string(rate_limit_) + " audit lines a second (log.audit_rate_limit)";
  uint64_t total = 0;
  for (const auto& [event, count] : suppressed_) {
    line["suppressed"][event] = count;
    total += count;
  }
  line["total"] = total;
  suppressed_.clear();
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

void AuditLog::writeLine(const std::string& text) const {
  std::string_view rest = text;
  while (!rest.empty()) {  // a short write (a file on a full disk) goes on with the rest
    ssize_t w = ::write(fd_, rest.data(), rest.size());
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // a full disk or closed pipe must not stop the proxy
    rest.remove_prefix(static_cast<size_t>(w));
  }
}

}  // namespace tessera::proxy
