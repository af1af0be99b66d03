#include "proxy/access_log.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace tessera::proxy {

namespace {

constexpr size_t kFlushAt = 8192;

void appendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        // Control bytes, and bytes >= 0x80 (a URL is not promised to be UTF-8): escaped, so the
        // line is always valid JSON.
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x80) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

std::string isoTime(int64_t time_us) {
  time_t secs = static_cast<time_t>(time_us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:06d}Z", std::string_view(buf, n), time_us % 1000000);
}

}  // namespace

AccessLogSink::AccessLogSink(const std::string& target, const std::string& format) {
  format_ = format == "common" ? Format::kCommon : Format::kJson;
  if (target == "off") return;
  if (target == "stdout") {
    fd_ = STDOUT_FILENO;
  } else if (target == "stderr") {
    fd_ = STDERR_FILENO;
  } else {
    fd_ = ::open(target.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      throw std::runtime_error(fmt::format("cannot open {}: {}", target, strerror(errno)));
    }
    owned_ = true;
  }
}

AccessLogSink::~AccessLogSink() {
  if (owned_) ::close(fd_);
}

void AccessLogSink::write(std::string_view lines) const {
  // Lines from several workers share the fd: write at most PIPE_BUF-sized runs of whole lines so
  // a pipe reader never sees two workers' bytes mixed inside one line.
  while (!lines.empty()) {
    size_t n = lines.size();
    if (n > 4096) {
      size_t cut = lines.rfind('\n', 4095);
      // A line longer than that (a huge path) goes alone: it cannot be atomic, the others can.
      if (cut == std::string_view::npos) cut = lines.find('\n');
      n = cut == std::string_view::npos ? lines.size() : cut + 1;
    }
    ssize_t w = ::write(fd_, lines.data(), n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // a full disk or closed pipe must not stop the proxy
    lines.remove_prefix(static_cast<size_t>(w));
  }
}

void AccessLogBuffer::setSink(std::shared_ptr<const AccessLogSink> sink) {
  flush();
  sink_ = std::move(sink);
}

void AccessLogBuffer::append(const AccessRecord& r) {
  if (!sink_ || !sink_->enabled()) return;
  if (sink_->format() == AccessLogSink::Format::kJson) {
    formatAccessJson(r, buf_);
  } else {
    formatAccessCommon(r, buf_);
  }
  if (buf_.size() >= kFlushAt) flush();
}

void AccessLogBuffer::flush() {
  if (!buf_.empty() && sink_) sink_->write(buf_);
  buf_.clear();
}

void formatAccessJson(const AccessRecord& r, std::string& out) {
  out += "{\"time\":\"";
  out += isoTime(r.time_us);
  out += "\",\"client\":";
  appendJsonString(out, r.client);
  out += ",\"method\":";
  appendJsonString(out, r.method);
  out += ",\"path\":";
  appendJsonString(out, r.path);
  out += fmt::format(",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_us\":{}", r.status,
                     r.bytes_in, r.bytes_out, r.duration_us);
  out += ",\"upstream\":";
  appendJsonString(out, r.upstream);
  out += ",\"tls_version\":";
  appendJsonString(out, r.tls_version);
  out += r.tls_resumed ? ",\"tls_resumed\":true}\n" : ",\"tls_resumed\":false}\n";
}

void formatAccessCommon(const AccessRecord& r, std::string& out) {
  time_t secs = static_cast<time_t>(r.time_us / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char when[40];
  size_t n = strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S +0000", &tm);
  std::string path;
  for (char c : r.path) {  // keep the quoted request field unambiguous
    if (c == '"' || c == '\\') path.push_back('\\');
    path.push_back(c);
  }
  out += fmt::format("{} - - [{}] \"{} {} HTTP/1.1\" {} {}\n", r.client, std::string_view(when, n),
                     r.method, path, r.status, r.bytes_out);
}

}  // namespace tessera::proxy
