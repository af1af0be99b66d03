#pragma once

// A TCP socket bound to a loopback port the kernel picks, for the tests of both test binaries.
// Bound but not listening, it refuses connections to its port for as long as it lives, and no
// other process can take the port meanwhile, nor can the kernel pick it as the source port of a
// connect to it (which would then connect to itself): what a test wants from a "dead" address.
// listen() turns it into a server nobody answers on (connects complete, nothing more).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace tessera::testing {

class LoopbackSocket {
 public:
  LoopbackSocket() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      if (fd_ >= 0) ::close(fd_);
      throw std::runtime_error("cannot bind a loopback port");
    }
    port_ = ntohs(a.sin_port);
  }
  ~LoopbackSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  LoopbackSocket(LoopbackSocket&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), port_(other.port_) {}
  LoopbackSocket& operator=(LoopbackSocket&& other) noexcept {
    std::swap(fd_, other.fd_);
    std::swap(port_, other.port_);
    return *this;
  }

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void listen() {
    if (::listen(fd_, 8) != 0) throw std::runtime_error("cannot listen on a loopback port");
  }

 private:
  int fd_;
  uint16_t port_ = 0;
};

}  // namespace tessera::testing
