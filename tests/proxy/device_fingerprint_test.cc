#include "proxy/device_fingerprint.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

namespace tessera::proxy {
namespace {

sockaddr_storage v4(const char* ip) {
  sockaddr_storage s{};
  auto& a = reinterpret_cast<sockaddr_in&>(s);
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a.sin_addr);
  return s;
}

sockaddr_storage v6(const char* ip) {
  sockaddr_storage s{};
  auto& a = reinterpret_cast<sockaddr_in6&>(s);
  a.sin6_family = AF_INET6;
  inet_pton(AF_INET6, ip, &a.sin6_addr);
  return s;
}

TEST(DeviceFingerprintTest, MasksHostBits) {
  EXPECT_EQ(maskedIp(v4("198.51.100.77"), 32, 64), "198.51.100.77/32");
  EXPECT_EQ(maskedIp(v4("198.51.100.77"), 24, 64), "198.51.100.0/24");
  EXPECT_EQ(maskedIp(v4("198.51.100.77"), 20, 64), "198.51.96.0/20");
  EXPECT_EQ(maskedIp(v4("198.51.100.77"), 0, 64), "0.0.0.0/0");
  EXPECT_EQ(maskedIp(v6("2001:db8:1:2:3:4:5:6"), 32, 64), "2001:db8:1:2::/64");
  EXPECT_EQ(maskedIp(v6("2001:db8:1:2:3:4:5:6"), 32, 128), "2001:db8:1:2:3:4:5:6/128");
}

TEST(DeviceFingerprintTest, JoinsAttributesInConfiguredOrder) {
  conf::TlsBinding b;
  b.attributes = {conf::DeviceAttribute::kJa4, conf::DeviceAttribute::kIp};
  b.ipv4_prefix = 24;
  EXPECT_EQ(tlsDeviceFingerprint(b, v4("10.1.2.3"), "t13d0000h1_x_y"),
            "ja4=t13d0000h1_x_y;ip=10.1.2.0/24");
  EXPECT_TRUE(bindingUsesJa4(b));
  b.attributes = {conf::DeviceAttribute::kIp};
  EXPECT_FALSE(bindingUsesJa4(b));
  EXPECT_EQ(tlsDeviceFingerprint(b, v4("10.1.2.3"), ""), "ip=10.1.2.0/24");
  b.attributes.clear();
  EXPECT_EQ(tlsDeviceFingerprint(b, v4("10.1.2.3"), "ignored"), "");
}

}  // namespace
}  // namespace tessera::proxy
