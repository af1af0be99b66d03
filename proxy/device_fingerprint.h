#pragma once

// The device fingerprint that binds a TLS session to the device that made it: the configured
// attributes (device_binding.tls.attributes) of the client, in a fixed order, as one string.
// "ip=203.0.113.0/24;ja4=t13d1516h2_8daaf6152771_e5627efa2ab1". Empty when binding is off.
//
// MAC addresses are not visible past L2, so `ip` (with a prefix, so a device that moves inside its
// network keeps its sessions) and `ja4` (its TLS stack) are what a TLS terminator can see.

#include <sys/socket.h>

#include <string>
#include <string_view>

#include "conf/config.h"

namespace tessera::proxy {

// "198.51.100.0/24" or "2001:db8::/64": the peer address with host bits cleared.
std::string maskedIp(const sockaddr_storage& peer, int ipv4_prefix, int ipv6_prefix);

std::string tlsDeviceFingerprint(const conf::TlsBinding& binding, const sockaddr_storage& peer,
                                 std::string_view ja4);

bool bindingUsesJa4(const conf::TlsBinding& binding);

}  // namespace tessera::proxy
