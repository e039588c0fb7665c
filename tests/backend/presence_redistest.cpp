// RedisPresenceRegistry against a real Redis (the `infra` fixture's): the PresenceRegistry contract
// (also run for MemoryPresenceRegistry), then what only Redis does: TTL expiry and Refresh, the key
// layout operators look at, and behaviour while Redis is unreachable, unresponsive or restarting.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <stdexcept>
#include <thread>

#include "adapters/memory/memory_presence.hpp"
#include "adapters/redis/redis_presence.hpp"
#include "backend/backend_env.hpp"
#include "contract/presence_contract.hpp"

extern char** environ;

namespace flare {
namespace {

using namespace std::chrono_literals;
using contract::ExpectSessions;
using contract::MakeSession;

struct MemoryPresenceFactory {
    using Registry = MemoryPresenceRegistry;
    std::unique_ptr<Registry> Open() { return std::make_unique<Registry>(); }
};

struct RedisPresenceFactory {
    using Registry = RedisPresenceRegistry;
    std::unique_ptr<Registry> Open() {
        std::string url = test::BackendUrl("FLARE_TEST_REDIS_URL");
        if (url.empty()) {
            return nullptr;
        }
        RedisOptions options;
        options.url = url;
        options.key_prefix = test::UniqueName("flare_presence_ct_") + ":";
        auto registry = std::make_unique<Registry>(options);
        registry->Start();
        return registry;
    }
};

}  // namespace

namespace contract {
INSTANTIATE_TYPED_TEST_SUITE_P(Memory, PresenceContract, ::testing::Types<MemoryPresenceFactory>);
INSTANTIATE_TYPED_TEST_SUITE_P(Redis, PresenceContract, ::testing::Types<RedisPresenceFactory>);
}  // namespace contract

namespace {

template <typename T, typename F>
Result<T> Await(F call) {
    auto p = std::make_shared<std::promise<Result<T>>>();
    auto f = p->get_future();
    call([p](Result<T> r) { p->set_value(std::move(r)); });
    return f.get();
}

// Polls `pred` until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

// A loopback port nothing listens on (it was free a moment ago).
int FreePort() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        throw std::runtime_error("cannot find a free port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

bool PortAccepts(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    ::close(fd);
    return ok;
}

// A redis-server of the test's own, a direct child stopped by its PID.
class OwnRedis {
public:
    explicit OwnRedis(int port) : port_(port) {
        dir_ = std::filesystem::temp_directory_path() / test::UniqueName("flare_own_redis_");
        std::filesystem::create_directories(dir_);
    }
    ~OwnRedis() {
        Kill();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    // Starts the server and waits until it accepts connections.
    bool Start() {
        std::string port = std::to_string(port_), dir = dir_.string(), log = (dir_ / "redis.log").string();
        std::vector<std::string> args{
            "redis-server", "--port", port, "--bind",      "127.0.0.1", "--save",    "", "--appendonly",
            "no",           "--dir",  dir,  "--daemonize", "no",        "--logfile", log};
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        if (posix_spawnp(&pid_, "redis-server", nullptr, nullptr, argv.data(), environ) != 0) {
            pid_ = -1;
            return false;
        }
        return WaitFor([&] { return PortAccepts(port_); }, 10s);
    }
    // SIGKILL, as in a crash.
    void Kill() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
    }
    std::string Url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

private:
    int port_;
    pid_t pid_ = -1;
    std::filesystem::path dir_;
};

class RedisPresenceTest : public ::testing::Test {
protected:
    void SetUp() override {
        FLARE_REQUIRE_BACKEND(url, "FLARE_TEST_REDIS_URL");
        url_ = url;
        prefix_ = test::UniqueName("flare_presence_") + ":";
        RedisOptions raw;
        raw.url = url_;
        raw_ = std::make_unique<RedisClient>(raw, "test_redis_unavailable");
        raw_->Start();
    }

    std::unique_ptr<RedisPresenceRegistry> Open(std::chrono::milliseconds ttl = 30s, std::string url = "",
                                                std::chrono::milliseconds timeout = 2s) {
        RedisOptions options;
        options.url = url.empty() ? url_ : url;
        options.key_prefix = prefix_;
        options.presence_ttl = ttl;
        options.command_timeout = timeout;
        auto r = std::make_unique<RedisPresenceRegistry>(options);
        r->Start();
        return r;
    }

    // One command on the test's own connection.
    RedisReply Raw(std::vector<std::string> argv) {
        auto r =
            Await<std::vector<RedisReply>>([&](auto cb) { raw_->Submit({RedisCommand::Plain(std::move(argv))}, cb); });
        EXPECT_TRUE(r.ok()) << r.error().message;
        return r.ok() ? r->front() : RedisReply{};
    }

    static Result<std::optional<DeviceSession>> Register(RedisPresenceRegistry& reg, DeviceSession s) {
        return Await<std::optional<DeviceSession>>([&](auto cb) { reg.Register(std::move(s), cb); });
    }
    static Result<std::vector<DeviceSession>> Lookup(RedisPresenceRegistry& reg, const std::string& tenant,
                                                     std::vector<std::string> users) {
        auto ids = std::make_shared<const std::vector<std::string>>(std::move(users));
        return Await<std::vector<DeviceSession>>([&](auto cb) { reg.Lookup(tenant, ids, cb); });
    }
    static Result<std::vector<DeviceSession>> ListTenant(RedisPresenceRegistry& reg, const std::string& tenant) {
        return Await<std::vector<DeviceSession>>([&](auto cb) { reg.ListTenant(tenant, cb); });
    }
    static Status Refresh(RedisPresenceRegistry& reg, std::vector<DeviceSession> sessions) {
        auto p = std::make_shared<std::promise<Status>>();
        auto f = p->get_future();
        reg.Refresh(std::move(sessions), [p](Status s) { p->set_value(std::move(s)); });
        return f.get();
    }
    // Number of devices Lookup finds for the users, or -1 on an error.
    static int Count(RedisPresenceRegistry& reg, const std::string& tenant, std::vector<std::string> users) {
        auto r = Lookup(reg, tenant, std::move(users));
        return r.ok() ? static_cast<int>(r->size()) : -1;
    }

    std::string url_;
    std::string prefix_;
    std::unique_ptr<RedisClient> raw_;
};

TEST_F(RedisPresenceTest, KeysFollowTheOperatorGuideLayout) {
    auto reg = Open();
    auto s = MakeSession("t1", "alice", "phone", "gw-a", 9);
    ASSERT_TRUE(Register(*reg, s).ok());
    const std::string session_key = prefix_ + "session:t1:alice";
    auto record = Raw({"HGET", session_key, "phone"});
    ASSERT_EQ(record.type, RedisReply::Type::kString);
    EXPECT_NE(record.str.find("gw-a"), std::string::npos);
    EXPECT_EQ(Raw({"ZSCORE", prefix_ + "session_exp:t1:alice", "phone"}).type, RedisReply::Type::kString);
    EXPECT_EQ(Raw({"ZSCORE", prefix_ + "online:t1", "alice"}).type, RedisReply::Type::kString);
    for (const std::string& key : {session_key, prefix_ + "session_exp:t1:alice", prefix_ + "online:t1"}) {
        auto pttl = Raw({"PTTL", key});
        EXPECT_GT(pttl.integer, 25'000) << key;
        EXPECT_LE(pttl.integer, 30'000) << key;
    }
    reg->Unregister("t1", "alice", "phone", "gw-a", 9);
    ASSERT_EQ(Count(*reg, "t1", {"alice"}), 0);
    EXPECT_EQ(Raw({"EXISTS", session_key, prefix_ + "session_exp:t1:alice", prefix_ + "online:t1"}).integer, 0)
        << "the last device's unregister leaves keys behind";
}

TEST_F(RedisPresenceTest, RecordsNotRefreshedExpireAfterTheirTtl) {
    constexpr auto kTtl = 300ms;
    auto reg = Open(kTtl);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<DeviceSession> sessions{MakeSession("t1", "alice", "phone", "gw-a", 1),
                                        MakeSession("t1", "alice", "web", "gw-a", 2),
                                        MakeSession("t1", "bob", "phone", "gw-b", 3)};
    for (const auto& s : sessions) {
        ASSERT_TRUE(Register(*reg, s).ok());
    }
    auto found = Lookup(*reg, "t1", {"alice", "bob"});
    ASSERT_TRUE(found.ok());
    if (std::chrono::steady_clock::now() - t0 < kTtl) {
        ExpectSessions(*found, sessions);
    }
    ASSERT_TRUE(WaitFor(
        [&] {
            auto all = ListTenant(*reg, "t1");
            return Count(*reg, "t1", {"alice", "bob"}) == 0 && all.ok() && all->empty();
        },
        5s))
        << "records outlived their TTL";
    EXPECT_GE(std::chrono::steady_clock::now() - t0, kTtl - 20ms) << "records expired before their TTL";
    // Abandoned users vanish entirely. The keys' own expiry is in milliseconds and may lag the records'
    // by one: wait for it rather than race it.
    EXPECT_TRUE(WaitFor(
        [&] {
            return Raw({"EXISTS", prefix_ + "session:t1:alice", prefix_ + "session_exp:t1:alice",
                        prefix_ + "session:t1:bob", prefix_ + "session_exp:t1:bob", prefix_ + "online:t1"})
                       .integer == 0;
        },
        2s))
        << "the keys of expired users were left behind";
}

TEST_F(RedisPresenceTest, RefreshKeepsARecordAliveBeyondItsTtl) {
    constexpr auto kTtl = 500ms;
    auto reg = Open(kTtl);
    auto s = MakeSession("t1", "alice", "phone", "gw-a", 1);
    ASSERT_TRUE(Register(*reg, s).ok());
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < 4 * kTtl) {
        ASSERT_TRUE(Refresh(*reg, {s}).ok());
        auto found = Lookup(*reg, "t1", {"alice"});
        ASSERT_TRUE(found.ok());
        ExpectSessions(*found, {s});
        std::this_thread::sleep_for(50ms);  // the heartbeat interval
    }
    auto all = ListTenant(*reg, "t1");
    ASSERT_TRUE(all.ok());
    ExpectSessions(*all, {s});
    // Without heartbeats it goes.
    EXPECT_TRUE(WaitFor([&] { return Count(*reg, "t1", {"alice"}) == 0; }, 5s));
}

TEST_F(RedisPresenceTest, RefreshWritesBackARecordThatExpired) {
    constexpr auto kTtl = 300ms;
    auto reg = Open(kTtl);
    auto s = MakeSession("t1", "alice", "phone", "gw-a", 1);
    ASSERT_TRUE(Register(*reg, s).ok());
    ASSERT_TRUE(WaitFor([&] { return Count(*reg, "t1", {"alice"}) == 0; }, 5s));
    const auto refreshed = std::chrono::steady_clock::now();
    ASSERT_TRUE(Refresh(*reg, {s}).ok());
    auto found = Lookup(*reg, "t1", {"alice"});
    auto all = ListTenant(*reg, "t1");
    ASSERT_TRUE(found.ok());
    ASSERT_TRUE(all.ok());
    if (std::chrono::steady_clock::now() - refreshed < kTtl) {
        ExpectSessions(*found, {s});
        ExpectSessions(*all, {s});
    }
}

TEST_F(RedisPresenceTest, RefreshByAReplacedConnectionDoesNotExtendItsSuccessor) {
    constexpr auto kTtl = 300ms;
    auto reg = Open(kTtl);
    auto first = MakeSession("t1", "alice", "phone", "gw-a", 1);
    auto second = MakeSession("t1", "alice", "phone", "gw-b", 2);
    ASSERT_TRUE(Register(*reg, first).ok());
    const auto replaced_at = std::chrono::steady_clock::now();
    auto replaced = Register(*reg, second);
    ASSERT_TRUE(replaced.ok());
    ASSERT_TRUE(replaced->has_value());
    // The replaced connection keeps sending heartbeats: the successor still expires on time. (Once it
    // has, the heartbeat writes the replaced record back, as for any record that expired meanwhile.)
    EXPECT_TRUE(WaitFor(
        [&] {
            EXPECT_TRUE(Refresh(*reg, {first}).ok());
            auto found = Lookup(*reg, "t1", {"alice"});
            return found.ok() && std::none_of(found->begin(), found->end(),
                                              [](const DeviceSession& d) { return d.connection_id == 2; });
        },
        5s))
        << "the successor was kept alive by the replaced connection's heartbeats";
    EXPECT_GE(std::chrono::steady_clock::now() - replaced_at, kTtl - 20ms) << "the successor went before its TTL";
}

TEST_F(RedisPresenceTest, UnreachableRedisFailsFastWithUnavailable) {
    const int port = FreePort();
    const std::string url = "redis://127.0.0.1:" + std::to_string(port);
    auto reg = Open(30s, url, 500ms);
    auto expect_unavailable = [&](const Error& e) {
        EXPECT_EQ(e.code, Errc::kUnavailable);
        EXPECT_EQ(e.reason, "presence_unavailable");
        EXPECT_NE(e.message.find(url), std::string::npos) << e.message;
    };
    for (int round = 0; round < 3; ++round) {
        const auto start = std::chrono::steady_clock::now();
        auto r = Register(*reg, MakeSession("t1", "alice", "phone", "gw-a", 1));
        ASSERT_FALSE(r.ok());
        expect_unavailable(r.error());
        reg->Unregister("t1", "alice", "phone", "gw-a", 1);
        auto l = Lookup(*reg, "t1", {"alice"});
        ASSERT_FALSE(l.ok());
        expect_unavailable(l.error());
        auto t = ListTenant(*reg, "t1");
        ASSERT_FALSE(t.ok());
        expect_unavailable(t.error());
        auto f = Refresh(*reg, {MakeSession("t1", "alice", "phone", "gw-a", 1)});
        ASSERT_FALSE(f.ok());
        expect_unavailable(f.error());
        EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
        std::this_thread::sleep_for(150ms);  // let a background reconnect attempt happen
    }
    reg->Stop();
    auto r = Register(*reg, MakeSession("t1", "alice", "phone", "gw-a", 1));
    ASSERT_FALSE(r.ok());
    expect_unavailable(r.error());
}

TEST_F(RedisPresenceTest, UnresponsiveRedisFailsWithinTheCommandTimeout) {
    // A listener that never accepts: connecting succeeds (the kernel's backlog), nothing ever answers.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(::listen(fd, 64), 0);
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    const std::string url = "redis://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    {
        auto reg = Open(30s, url, 300ms);
        for (int i = 0; i < 2; ++i) {
            const auto start = std::chrono::steady_clock::now();
            auto r = Lookup(*reg, "t1", {"alice"});
            const auto took = std::chrono::steady_clock::now() - start;
            ASSERT_FALSE(r.ok());
            EXPECT_EQ(r.error().code, Errc::kUnavailable);
            EXPECT_NE(r.error().message.find("no answer within 300 ms"), std::string::npos) << r.error().message;
            EXPECT_LT(took, 3s);
            std::this_thread::sleep_for(150ms);
        }
        const auto start = std::chrono::steady_clock::now();
        reg.reset();
        EXPECT_LT(std::chrono::steady_clock::now() - start, 3s) << "Stop() hung";
    }
    ::close(fd);
}

TEST_F(RedisPresenceTest, ReconnectsByItselfWhenRedisIsBack) {
    const int port = FreePort();
    OwnRedis server(port);
    ASSERT_TRUE(server.Start()) << "could not start redis-server on port " << port;
    auto reg = Open(30s, server.Url(), 500ms);
    auto s = MakeSession("t1", "alice", "phone", "gw-a", 1);
    ASSERT_TRUE(Register(*reg, s).ok());
    ASSERT_EQ(Count(*reg, "t1", {"alice"}), 1);

    server.Kill();
    auto down = Lookup(*reg, "t1", {"alice"});
    ASSERT_FALSE(down.ok());
    EXPECT_EQ(down.error().code, Errc::kUnavailable);
    EXPECT_EQ(down.error().reason, "presence_unavailable");

    ASSERT_TRUE(server.Start()) << "could not restart redis-server on port " << port;
    // The restarted server is empty: the gateway registers again once Redis answers.
    EXPECT_TRUE(WaitFor([&] { return Register(*reg, s).ok(); }, 10s)) << "the adapter did not reconnect";
    auto found = Lookup(*reg, "t1", {"alice"});
    ASSERT_TRUE(found.ok()) << found.error().message;
    ExpectSessions(*found, {s});
}

TEST_F(RedisPresenceTest, StopCompletesEveryCallExactlyOnce) {
    auto reg = Open();
    ASSERT_TRUE(Register(*reg, MakeSession("t1", "alice", "phone", "gw-a", 1)).ok());
    constexpr int kCalls = 3000;
    auto calls = std::make_shared<std::vector<std::atomic<int>>>(kCalls);
    auto bad = std::make_shared<std::atomic<int>>(0);
    auto ids = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"alice"});
    for (int i = 0; i < kCalls; ++i) {
        reg->Lookup("t1", ids, [calls, bad, i](Result<std::vector<DeviceSession>> r) {
            (*calls)[i].fetch_add(1);
            if (r.ok() ? r->size() != 1
                       : r.error().code != Errc::kUnavailable || r.error().reason != "presence_unavailable") {
                bad->fetch_add(1);
            }
        });
    }
    reg->Stop();
    for (int i = 0; i < kCalls; ++i) {
        ASSERT_EQ((*calls)[i].load(), 1) << "call " << i;
    }
    EXPECT_EQ(bad->load(), 0);
    auto after = Lookup(*reg, "t1", {"alice"});
    ASSERT_FALSE(after.ok());
    EXPECT_EQ(after.error().code, Errc::kUnavailable);
}

TEST_F(RedisPresenceTest, UsesTheDatabaseOfTheUrl) {
    auto reg = Open(30s, url_ + "/3");
    ASSERT_TRUE(Register(*reg, MakeSession("t1", "alice", "phone", "gw-a", 1)).ok());
    EXPECT_EQ(Raw({"EXISTS", prefix_ + "session:t1:alice"}).integer, 0) << "written to database 0";
    RedisOptions db3;
    db3.url = url_ + "/3";
    RedisClient raw3(db3, "test_redis_unavailable");
    raw3.Start();
    auto r = Await<std::vector<RedisReply>>([&](auto cb) {
        raw3.Submit({RedisCommand::Plain({"EXISTS", prefix_ + "session:t1:alice"})}, cb);
    });
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->front().integer, 1);
    EXPECT_EQ(Count(*reg, "t1", {"alice"}), 1);
}

TEST_F(RedisPresenceTest, LargeRefreshesAndLookupsSpanManyScriptCalls) {
    auto reg = Open();
    constexpr int kUsers = 2500;  // more than one pipeline and many LOOKUP calls
    std::vector<DeviceSession> sessions;
    std::vector<std::string> users;
    for (int i = 0; i < kUsers; ++i) {
        users.push_back("u" + std::to_string(i));
        sessions.push_back(MakeSession("t1", users.back(), "phone", "gw-a", static_cast<uint64_t>(i + 1)));
    }
    // A refresh of records that do not exist yet writes them (as after an expiry).
    auto s = Refresh(*reg, sessions);
    ASSERT_TRUE(s.ok()) << s.error().message;
    auto found = Lookup(*reg, "t1", users);
    ASSERT_TRUE(found.ok()) << found.error().message;
    ExpectSessions(*found, sessions);
    auto all = ListTenant(*reg, "t1");
    ASSERT_TRUE(all.ok()) << all.error().message;
    ExpectSessions(*all, sessions);
}

TEST_F(RedisPresenceTest, ScriptsFlushedOnTheServerAreSentAgain) {
    auto reg = Open();
    auto a = MakeSession("t1", "alice", "phone", "gw-a", 1);
    ASSERT_TRUE(Register(*reg, a).ok());
    EXPECT_EQ(Raw({"SCRIPT", "FLUSH"}).str, "OK");
    auto b = MakeSession("t1", "bob", "phone", "gw-a", 2);
    auto r = Register(*reg, b);
    ASSERT_TRUE(r.ok()) << r.error().message;
    auto found = Lookup(*reg, "t1", {"alice", "bob"});
    ASSERT_TRUE(found.ok()) << found.error().message;
    ExpectSessions(*found, {a, b});
}

TEST_F(RedisPresenceTest, ARefusedScriptIsAnInternalError) {
    auto reg = Open();
    Raw({"SET", prefix_ + "session:t1:alice", "not a hash"});
    auto r = Register(*reg, MakeSession("t1", "alice", "phone", "gw-a", 1));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kInternal);
    EXPECT_EQ(r.error().reason, "redis_error");
    EXPECT_NE(r.error().message.find("WRONGTYPE"), std::string::npos) << r.error().message;
    // The connection is still good.
    ASSERT_TRUE(Register(*reg, MakeSession("t1", "bob", "phone", "gw-a", 2)).ok());
}

TEST(RedisUrlTest, ParsesHostPortDatabaseAndCredentials) {
    auto a = ParseRedisUrl("redis://127.0.0.1:26379/2");
    EXPECT_EQ(a.host, "127.0.0.1");
    EXPECT_EQ(a.port, 26379);
    EXPECT_EQ(a.db, 2);
    EXPECT_TRUE(a.password.empty());
    auto b = ParseRedisUrl("redis://cache");
    EXPECT_EQ(b.host, "cache");
    EXPECT_EQ(b.port, 6379);
    EXPECT_EQ(b.db, 0);
    auto c = ParseRedisUrl("redis://:s3cret@h:1/");
    EXPECT_EQ(c.host, "h");
    EXPECT_EQ(c.port, 1);
    EXPECT_EQ(c.db, 0);
    EXPECT_TRUE(c.username.empty());
    EXPECT_EQ(c.password, "s3cret");
    auto d = ParseRedisUrl("redis://flare:p%40ss@[::1]:6380/15");
    EXPECT_EQ(d.host, "::1");
    EXPECT_EQ(d.port, 6380);
    EXPECT_EQ(d.db, 15);
    EXPECT_EQ(d.username, "flare");
    EXPECT_EQ(d.password, "p@ss");
}

TEST(RedisUrlTest, BadUrlsAreRefusedAtConstructionNamingTheUrl) {
    for (std::string url : {"http://127.0.0.1:26379", "127.0.0.1:26379", "redis://", "redis://:26379", "redis://h:0",
                            "redis://h:65536", "redis://h:x", "redis://h:", "redis://h/db", "redis://h/1/2",
                            "rediss://h:6380", "redis://[::1", "redis://h?db=1", "redis://user@h"}) {
        RedisOptions options;
        options.url = url;
        try {
            RedisPresenceRegistry reg(options);
            ADD_FAILURE() << url << " was accepted";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find("'" + url + "'"), std::string::npos) << e.what();
        }
    }
    RedisOptions zero_ttl;
    zero_ttl.presence_ttl = 0ms;
    EXPECT_THROW(RedisPresenceRegistry{zero_ttl}, std::invalid_argument);
}

TEST(RedisRecordTest, RecordsRoundTripAnyBytes) {
    const std::string nul("a\0b", 3);
    auto rec = EncodeRecord({"", "x:y,z", nul, "12:34,"});
    std::vector<std::string_view> f;
    ASSERT_TRUE(DecodeRecord(rec, f));
    ASSERT_EQ(f.size(), 4u);
    EXPECT_EQ(f[0], "");
    EXPECT_EQ(f[1], "x:y,z");
    EXPECT_EQ(f[2], nul);
    EXPECT_EQ(f[3], "12:34,");
    for (std::string bad : {"3:ab,", "x:ab,", "2:ab", ":,", "2:abc"}) {
        EXPECT_FALSE(DecodeRecord(bad, f)) << bad;
    }
}

}  // namespace
}  // namespace flare
