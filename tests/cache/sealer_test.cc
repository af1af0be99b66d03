// Sealer: record format, tamper and truncation detection, AAD binding, key rotation, key files.
// Key files are made at test time in a mkdtemp directory under /tmp.

#include "cache/sealer.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace tessera::cache {
namespace {

constexpr std::string_view kAad = "tls:sess:0f1e2d3c4b5a69788796a5b4c3d2e1f0";

SealKey makeKey(std::string id, unsigned char fill) {
  SealKey k{std::move(id), {}};
  for (size_t i = 0; i < k.bytes.size(); ++i) k.bytes[i] = static_cast<unsigned char>(fill + i);
  return k;
}

// Bytes that do not repeat with a short period, so a plaintext leak would show as a substring.
std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('A' + (i * 7 + i / 26) % 26);
  return s;
}

size_t recordSize(const std::string& id, size_t plaintext) {
  return 2 + id.size() + Sealer::kNonceBytes + plaintext + Sealer::kTagBytes;
}

// ---------------------------------------------------------------------------------------------
// Round trip and format

TEST(SealerTest, RoundTripOfSeveralSizes) {
  Sealer sealer({makeKey("k1", 1)});
  for (size_t n : {0, 1, 15, 16, 17, 255, 256, 1024, 4096, 65537}) {
    std::string plaintext = pattern(n);
    std::string record = sealer.seal(kAad, plaintext);
    ASSERT_EQ(record.size(), recordSize("k1", n)) << n;
    std::optional<std::string> opened = sealer.open(kAad, record);
    ASSERT_TRUE(opened.has_value()) << n;
    EXPECT_EQ(*opened, plaintext) << n;
  }
}

TEST(SealerTest, EmptyAadRoundTrips) {
  Sealer sealer({makeKey("k1", 1)});
  std::string record = sealer.seal("", "secret");
  EXPECT_EQ(sealer.open("", record), std::optional<std::string>("secret"));
  EXPECT_EQ(sealer.open("x", record), std::nullopt);
}

TEST(SealerTest, HeaderLayout) {
  Sealer sealer({makeKey("key-2025", 1)});
  std::string record = sealer.seal(kAad, "abc");
  ASSERT_EQ(record.size(), recordSize("key-2025", 3));
  EXPECT_EQ(static_cast<unsigned char>(record[0]), 0x01);
  EXPECT_EQ(static_cast<unsigned char>(record[1]), 8);
  EXPECT_EQ(record.substr(2, 8), "key-2025");
}

TEST(SealerTest, TwoSealsOfTheSamePlaintextDiffer) {
  Sealer sealer({makeKey("k1", 1)});
  std::string a = sealer.seal(kAad, "same plaintext");
  std::string b = sealer.seal(kAad, "same plaintext");
  ASSERT_EQ(a.size(), b.size());
  EXPECT_NE(a, b);
  const size_t nonce_at = 2 + 2;
  EXPECT_NE(a.substr(nonce_at, Sealer::kNonceBytes), b.substr(nonce_at, Sealer::kNonceBytes));
  EXPECT_EQ(sealer.open(kAad, a), std::optional<std::string>("same plaintext"));
  EXPECT_EQ(sealer.open(kAad, b), std::optional<std::string>("same plaintext"));
}

TEST(SealerTest, NoncesDoNotRepeat) {
  Sealer sealer({makeKey("k1", 1)});
  std::set<std::string> nonces;
  for (int i = 0; i < 1000; ++i) nonces.insert(sealer.seal(kAad, "x").substr(4, 12));
  EXPECT_EQ(nonces.size(), 1000u);
}

TEST(SealerTest, RecordContainsNeitherPlaintextNorKey) {
  SealKey key = makeKey("k1", 0x40);
  Sealer sealer({key});
  const std::string plaintext = "MASTER-SECRET:" + pattern(48);
  std::string record = sealer.seal(kAad, plaintext);
  EXPECT_EQ(record.find(plaintext.substr(0, 8)), std::string::npos);
  EXPECT_EQ(record.find(plaintext.substr(20, 8)), std::string::npos);
  std::string key_bytes(key.bytes.begin(), key.bytes.end());
  EXPECT_EQ(record.find(key_bytes.substr(0, 8)), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Tampering

TEST(SealerTest, EverySingleByteChangeIsRejected) {
  Sealer sealer({makeKey("k1", 1)});
  std::string record = sealer.seal(kAad, pattern(40));
  ASSERT_TRUE(sealer.open(kAad, record).has_value());
  for (size_t i = 0; i < record.size(); ++i) {
    for (unsigned char mask : {0x01, 0x80, 0xff}) {
      std::string bad = record;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      EXPECT_EQ(sealer.open(kAad, bad), std::nullopt) << "byte " << i << " mask " << int(mask);
    }
  }
}

TEST(SealerTest, TruncatedOrExtendedRecordIsRejected) {
  Sealer sealer({makeKey("k1", 1)});
  std::string record = sealer.seal(kAad, pattern(40));
  for (size_t n = 0; n < record.size(); ++n) {
    EXPECT_EQ(sealer.open(kAad, record.substr(0, n)), std::nullopt) << n;
  }
  EXPECT_EQ(sealer.open(kAad, record + '\0'), std::nullopt);
  // Empty plaintext: only header, nonce and tag; any shorter is malformed.
  std::string empty = sealer.seal(kAad, "");
  ASSERT_EQ(empty.size(), recordSize("k1", 0));
  EXPECT_EQ(sealer.open(kAad, empty), std::optional<std::string>(""));
  EXPECT_EQ(sealer.open(kAad, empty.substr(0, empty.size() - 1)), std::nullopt);
}

TEST(SealerTest, WrongAadIsRejected) {
  Sealer sealer({makeKey("k1", 1)});
  std::string record = sealer.seal(kAad, "secret");
  EXPECT_EQ(sealer.open("tls:sess:other", record), std::nullopt);
  EXPECT_EQ(sealer.open(std::string(kAad) + "x", record), std::nullopt);
  EXPECT_EQ(sealer.open(kAad.substr(1), record), std::nullopt);
  EXPECT_EQ(sealer.open("", record), std::nullopt);
  EXPECT_EQ(sealer.open(kAad, record), std::optional<std::string>("secret"));
}

TEST(SealerTest, UnknownKeyIdIsRejected) {
  SealKey a = makeKey("a", 1);
  SealKey b = makeKey("b", 1);  // same bytes, other id
  Sealer sealer({a});
  Sealer other({b});
  std::string record = sealer.seal(kAad, "secret");
  EXPECT_EQ(other.open(kAad, record), std::nullopt);
}

// The header is authenticated: renaming the key id to another id with the same key bytes fails
// the tag, even though the opener could decrypt.
TEST(SealerTest, KeyIdIsAuthenticated) {
  Sealer sealer({makeKey("k1", 7), makeKey("k2", 7)});
  std::string record = sealer.seal(kAad, "secret");
  ASSERT_EQ(record.substr(2, 2), "k1");
  record[3] = '2';
  EXPECT_EQ(sealer.open(kAad, record), std::nullopt);
}

// The proxy's I/O paths call SSL_get_error without clearing the queue first.
TEST(SealerTest, FailedOpenLeavesTheErrorQueueEmpty) {
  Sealer sealer({makeKey("k1", 1)});
  std::string record = sealer.seal(kAad, "secret");
  record.back() = static_cast<char>(record.back() ^ 1);
  ERR_clear_error();
  EXPECT_EQ(sealer.open(kAad, record), std::nullopt);
  EXPECT_EQ(sealer.open("other", sealer.seal(kAad, "secret")), std::nullopt);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(SealerTest, UnknownVersionIsRejected) {
  Sealer sealer({makeKey("k1", 1)});
  std::string record = sealer.seal(kAad, "secret");
  record[0] = 0x02;
  EXPECT_EQ(sealer.open(kAad, record), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// Rotation

TEST(SealerTest, RotationOpensOldRecordsAndSealsWithTheFirstKey) {
  SealKey k1 = makeKey("k1", 1);
  SealKey k2 = makeKey("k2", 100);
  Sealer old_sealer({k1});
  Sealer rotating({k2, k1});
  Sealer new_only({k2});

  std::string old_record = old_sealer.seal(kAad, "old secret");
  EXPECT_EQ(rotating.open(kAad, old_record), std::optional<std::string>("old secret"));
  EXPECT_EQ(new_only.open(kAad, old_record), std::nullopt);

  std::string new_record = rotating.seal(kAad, "new secret");
  EXPECT_EQ(rotating.sealingKeyId(), "k2");
  EXPECT_EQ(static_cast<unsigned char>(new_record[1]), 2);
  EXPECT_EQ(new_record.substr(2, 2), "k2");
  EXPECT_EQ(new_only.open(kAad, new_record), std::optional<std::string>("new secret"));
  EXPECT_EQ(old_sealer.open(kAad, new_record), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// Construction

TEST(SealerTest, RejectsBadKeyLists) {
  EXPECT_THROW(Sealer({}), std::invalid_argument);
  EXPECT_THROW(Sealer({makeKey("", 1)}), std::invalid_argument);
  EXPECT_THROW(Sealer({makeKey(std::string(33, 'x'), 1)}), std::invalid_argument);
  EXPECT_THROW(Sealer({makeKey("a", 1), makeKey("a", 2)}), std::invalid_argument);
}

TEST(SealerTest, LongestKeyIdWorks) {
  const std::string id(32, 'x');
  Sealer sealer({makeKey(id, 1)});
  std::string record = sealer.seal(kAad, "secret");
  EXPECT_EQ(static_cast<unsigned char>(record[1]), 32);
  EXPECT_EQ(sealer.open(kAad, record), std::optional<std::string>("secret"));
}

TEST(SealerTest, EphemeralSealersAreIndependent) {
  std::unique_ptr<Sealer> a = Sealer::ephemeral();
  std::unique_ptr<Sealer> b = Sealer::ephemeral();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->sealingKeyId(), "ephemeral");
  std::string record = a->seal(kAad, "secret");
  EXPECT_EQ(record.substr(2, 9), "ephemeral");
  EXPECT_EQ(a->open(kAad, record), std::optional<std::string>("secret"));
  EXPECT_EQ(b->open(kAad, record), std::nullopt);  // same id, other random key
}

TEST(SealerTest, ConcurrentSealAndOpen) {
  Sealer sealer({makeKey("k1", 1)});
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&sealer, &failures, t] {
      for (int i = 0; i < 500; ++i) {
        std::string aad = "key:" + std::to_string(t) + ":" + std::to_string(i);
        std::string plaintext = pattern(static_cast<size_t>(i));
        if (sealer.open(aad, sealer.seal(aad, plaintext)) != plaintext) ++failures[t];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

// ---------------------------------------------------------------------------------------------
// Key files

class SealKeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sealer_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string writeFile(const std::string& name, const std::string& content) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

  static std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::string dir_;
};

TEST_F(SealKeyFileTest, ReadsA32ByteFile) {
  SealKey k = makeKey("k1", 9);
  std::string path = writeFile("k1.key", std::string(k.bytes.begin(), k.bytes.end()));
  std::string error;
  std::unique_ptr<Sealer> from_file = Sealer::fromFiles({{"k1", path}}, error);
  ASSERT_NE(from_file, nullptr) << error;
  EXPECT_EQ(error, "");
  // Same bytes as the in-memory key: each opens what the other sealed.
  Sealer in_memory({k});
  EXPECT_EQ(from_file->open(kAad, in_memory.seal(kAad, "secret")),
            std::optional<std::string>("secret"));
  EXPECT_EQ(in_memory.open(kAad, from_file->seal(kAad, "secret")),
            std::optional<std::string>("secret"));
}

TEST_F(SealKeyFileTest, FirstFileSeals) {
  std::string p1 = writeFile("1.key", std::string(32, '\x01'));
  std::string p2 = writeFile("2.key", std::string(32, '\x02'));
  std::string error;
  std::unique_ptr<Sealer> s = Sealer::fromFiles({{"new", p2}, {"old", p1}}, error);
  ASSERT_NE(s, nullptr) << error;
  EXPECT_EQ(s->seal(kAad, "x").substr(2, 3), "new");
}

TEST_F(SealKeyFileTest, RejectsWrongSizes) {
  std::string error;
  std::string p31 = writeFile("short.key", std::string(31, 'a'));
  EXPECT_EQ(Sealer::fromFiles({{"k1", p31}}, error), nullptr);
  EXPECT_EQ(error, p31 + ": must hold exactly 32 bytes, has 31");

  std::string p33 = writeFile("long.key", std::string(33, 'a'));
  EXPECT_EQ(Sealer::fromFiles({{"k1", p33}}, error), nullptr);
  EXPECT_EQ(error, p33 + ": must hold exactly 32 bytes, has 33");

  std::string p0 = writeFile("empty.key", "");
  EXPECT_EQ(Sealer::fromFiles({{"k1", p0}}, error), nullptr);
  EXPECT_EQ(error, p0 + ": must hold exactly 32 bytes, has 0");
}

TEST_F(SealKeyFileTest, RejectsMissingFileAndDirectory) {
  std::string error;
  std::string missing = dir_ + "/missing.key";
  EXPECT_EQ(Sealer::fromFiles({{"k1", missing}}, error), nullptr);
  EXPECT_EQ(error, missing + ": cannot read: No such file or directory");

  EXPECT_EQ(Sealer::fromFiles({{"k1", dir_}}, error), nullptr);
  EXPECT_EQ(error, dir_ + ": must be a regular file holding exactly 32 bytes");
}

TEST_F(SealKeyFileTest, ReportsTheBadFileAmongGoodOnes) {
  std::string good = writeFile("good.key", std::string(32, 'g'));
  std::string bad = writeFile("bad.key", std::string(16, 'b'));
  std::string error;
  EXPECT_EQ(Sealer::fromFiles({{"k1", good}, {"k2", bad}}, error), nullptr);
  EXPECT_EQ(error, bad + ": must hold exactly 32 bytes, has 16");
}

TEST_F(SealKeyFileTest, RejectsBadIdsAndEmptyList) {
  std::string good = writeFile("good.key", std::string(32, 'g'));
  std::string error;
  EXPECT_EQ(Sealer::fromFiles({}, error), nullptr);
  EXPECT_EQ(error, "no seal keys");
  EXPECT_EQ(Sealer::fromFiles({{"", good}}, error), nullptr);
  EXPECT_EQ(error, "seal key id \"\" must be 1 to 32 bytes, has 0");
  EXPECT_EQ(Sealer::fromFiles({{"k1", good}, {"k1", good}}, error), nullptr);
  EXPECT_EQ(error, "seal key id \"k1\" is listed twice");
}

TEST_F(SealKeyFileTest, WriteCreatesA0600FileOf32RandomBytes) {
  std::string path = dir_ + "/seal.key";
  std::string error;
  mode_t old_umask = ::umask(022);
  bool ok = writeSealKeyFile(path, error);
  ::umask(old_umask);
  ASSERT_TRUE(ok) << error;
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 32);

  std::string other = dir_ + "/other.key";
  ASSERT_TRUE(writeSealKeyFile(other, error)) << error;
  EXPECT_NE(readFile(path), readFile(other));
  EXPECT_NE(readFile(path), std::string(32, '\0'));

  std::unique_ptr<Sealer> s = Sealer::fromFiles({{"k1", path}}, error);
  ASSERT_NE(s, nullptr) << error;
  EXPECT_EQ(s->open(kAad, s->seal(kAad, "secret")), std::optional<std::string>("secret"));
}

TEST_F(SealKeyFileTest, WriteRefusesToOverwrite) {
  std::string path = writeFile("seal.key", "keep me");
  std::string error;
  EXPECT_FALSE(writeSealKeyFile(path, error));
  EXPECT_EQ(error, path + ": exists; remove it first");
  EXPECT_EQ(readFile(path), "keep me");

  std::string link = dir_ + "/link.key";
  ASSERT_EQ(::symlink((dir_ + "/nowhere").c_str(), link.c_str()), 0);
  EXPECT_FALSE(writeSealKeyFile(link, error));
  EXPECT_EQ(error, link + ": exists; remove it first");
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/nowhere"));
}

TEST_F(SealKeyFileTest, WriteReportsMissingDirectory) {
  std::string path = dir_ + "/no/such/dir/seal.key";
  std::string error;
  EXPECT_FALSE(writeSealKeyFile(path, error));
  EXPECT_EQ(error, path + ": cannot create: No such file or directory");
}

}  // namespace
}  // namespace tessera::cache
