#include "proxy/device_fingerprint.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace tessera::proxy {

namespace {

void clearHostBits(unsigned char* addr, size_t len, int prefix) {
  for (size_t i = 0; i < len; ++i) {
    int keep = prefix - static_cast<int>(i) * 8;
    if (keep >= 8) continue;
    addr[i] = keep <= 0 ? 0 : static_cast<unsigned char>(addr[i] & (0xff << (8 - keep)));
  }
}

}  // namespace

std::string maskedIp(const sockaddr_storage& peer, int ipv4_prefix, int ipv6_prefix) {
  char text[INET6_ADDRSTRLEN] = {0};
  if (peer.ss_family == AF_INET) {
    in_addr a = reinterpret_cast<const sockaddr_in&>(peer).sin_addr;
    clearHostBits(reinterpret_cast<unsigned char*>(&a), 4, ipv4_prefix);
    inet_ntop(AF_INET, &a, text, sizeof(text));
    return std::string(text) + "/" + std::to_string(ipv4_prefix);
  }
  if (peer.ss_family == AF_INET6) {
    in6_addr a = reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr;
    clearHostBits(a.s6_addr, 16, ipv6_prefix);
    inet_ntop(AF_INET6, &a, text, sizeof(text));
    return std::string(text) + "/" + std::to_string(ipv6_prefix);
  }
  return "unknown";
}

bool bindingUsesJa4(const conf::TlsBinding& binding) {
  for (conf::DeviceAttribute a : binding.attributes) {
    if (a == conf::DeviceAttribute::kJa4) return true;
  }
  return false;
}

std::string tlsDeviceFingerprint(const conf::TlsBinding& binding, const sockaddr_storage& peer,
                                 std::string_view ja4) {
  std::string fp;
  for (conf::DeviceAttribute a : binding.attributes) {
    if (!fp.empty()) fp.push_back(';');
    if (a == conf::DeviceAttribute::kIp) {
      fp += "ip=" + maskedIp(peer, binding.ipv4_prefix, binding.ipv6_prefix);
    } else {
      fp += "ja4=";
      fp += ja4;
    }
  }
  return fp;
}

}  // namespace tessera::proxy
