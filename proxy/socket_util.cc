#include "proxy/socket_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tessera::proxy {

bool resolve(const conf::HostPort& hp, SocketAddress& out, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(hp.port);
  int rc = getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    error = std::string("cannot resolve ") + hp.host + ": " + gai_strerror(rc);
    return false;
  }
  memcpy(&out.addr, res->ai_addr, res->ai_addrlen);
  out.len = res->ai_addrlen;
  out.text = hp.str();
  freeaddrinfo(res);
  return true;
}

int openListener(const SocketAddress& address, std::string& error) {
  int fd = ::socket(address.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + strerror(errno);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (address.addr.ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (::bind(fd, address.sa(), address.len) != 0 || ::listen(fd, 4096) != 0) {
    error = "cannot listen on " + address.text + ": " + strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string peerIp(const sockaddr_storage& peer) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (peer.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(peer).sin_addr, buf, sizeof(buf));
  } else if (peer.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr, buf, sizeof(buf));
  }
  return buf;
}

}  // namespace tessera::proxy
