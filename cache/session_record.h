#pragma once

// The TLS session record kept in a Store: what a node needs to resume a session another node made.
//
//   key   = "tls:" + hex(session id)              (sessionKey)
//   value = sealed(encodeSessionRecord(record))   (the caller seals; see cache/sealer.h)
//
// The encoding is versioned and length-prefixed so a record from a newer or corrupt writer is a
// clean miss, never a crash. The DER session (i2d_SSL_SESSION) holds the master secret, which is
// why the encoded record must only ever reach a store sealed.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tessera::cache {

// The DER holds the master secret, so a record wipes it (OPENSSL_cleanse) when destroyed or
// assigned over: the copies in the per-worker L1 and the ones decoded for a lookup leave nothing in
// freed memory.
struct SessionRecord {
  std::string der;          // i2d_SSL_SESSION
  std::string fingerprint;  // the device that made the session (may be empty: binding off)
  int64_t created = 0;      // unix seconds
  int64_t expiry = 0;       // unix seconds; a record past it is a miss

  SessionRecord() = default;
  SessionRecord(const SessionRecord&) = default;
  // A DER is far longer than a string's inline buffer, so a move takes its heap buffer and leaves
  // nothing behind to wipe.
  SessionRecord(SessionRecord&&) noexcept = default;
  SessionRecord& operator=(const SessionRecord& other);
  SessionRecord& operator=(SessionRecord&& other) noexcept;
  ~SessionRecord();
};

std::string sessionKey(std::string_view session_id);
std::string encodeSessionRecord(const SessionRecord& record);
std::optional<SessionRecord> decodeSessionRecord(std::string_view bytes);

}  // namespace tessera::cache
