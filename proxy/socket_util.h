#pragma once

// Addresses and sockets: resolving configured host:port pairs and opening listening sockets.
// Runs on the main thread (start-up and reload), never on a worker's data path: name resolution
// here may block.

#include <sys/socket.h>

#include <cerrno>
#include <string>

#include "conf/config.h"

namespace tessera::proxy {

struct SocketAddress {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;  // "host:port" as configured, for logs

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&addr); }
};

// Resolves a configured address. Returns false and sets `error` when it cannot.
bool resolve(const conf::HostPort& hp, SocketAddress& out, std::string& error);

// Opens a non-blocking listening socket with SO_REUSEPORT, so that each worker can have its own
// socket on the same address. Returns -1 and sets `error` on failure.
int openListener(const SocketAddress& address, std::string& error);

// accept(2), socket(2) or connect(2) failed for want of descriptors or memory on this machine
// (EMFILE, ENFILE, ENOBUFS, ENOMEM): not the peer's fault, and trying another would not help.
inline bool isLocalSocketShortage(int error) {
  return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

// The numeric address of a peer ("192.0.2.1" or "2001:db8::1"), without the port.
std::string peerIp(const sockaddr_storage& peer);

}  // namespace tessera::proxy
