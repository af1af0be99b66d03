#include "proxy/audit_log.h"

#include <fcntl.h>
#include <unistd.h>

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

AuditLog::AuditLog(const std::string& target) {
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
  if (owned_) ::close(fd_);
}

void AuditLog::record(std::string_view event, std::initializer_list<Field> fields) const {
  recordAll(event, std::vector<Field>(fields));
}

void AuditLog::recordAll(std::string_view event, const std::vector<Field>& fields) const {
  if (fd_ < 0) return;
  nlohmann::json line;
  line["time"] = nowIso();
  line["event"] = event;
  for (const auto& [key, value] : fields) line[std::string(key)] = value;
  // Client-controlled text (a header, a path) must not break the line: replace bad UTF-8.
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  ssize_t w;
  do {
    w = ::write(fd_, text.data(), text.size());
  } while (w < 0 && errno == EINTR);
}

}  // namespace tessera::proxy
