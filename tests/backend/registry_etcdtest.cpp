// ServiceRegistry adapters: EtcdServiceRegistry against the real etcd of the `infra` fixture (leases,
// keepalive, expiry after a crash, failover, timeouts, shutdown) and StaticServiceRegistry with its
// endpoint-list parser; the registry contract suite runs for both. A crash is simulated two ways: a
// forked child that registers and is killed with SIGKILL, and a registry destroyed without Deregister.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "adapters/etcd/etcd_registry.hpp"
#include "adapters/memory/static_service_registry.hpp"
#include "backend/backend_env.hpp"
#include "contract/registry_contract.hpp"

namespace flare {
namespace {

using namespace std::chrono_literals;
using contract::AwaitRegistry;
using contract::AwaitStatus;
using contract::MakeInstance;
using SteadyClock = std::chrono::steady_clock;

// ---- helpers ------------------------------------------------------------------------------------

Status RegisterOn(ServiceRegistry& r, ServiceInstance instance, std::chrono::seconds ttl) {
    return AwaitStatus([&](StatusCallback cb) { r.Register(instance, ttl, std::move(cb)); });
}

Status DeregisterOn(ServiceRegistry& r, const std::string& service, const std::string& id) {
    return AwaitStatus([&](StatusCallback cb) { r.Deregister(service, id, std::move(cb)); });
}

Result<std::vector<ServiceInstance>> ResolveOn(ServiceRegistry& r, const std::string& service) {
    return AwaitRegistry<std::vector<ServiceInstance>>(
        [&](Callback<std::vector<ServiceInstance>> cb) { r.Resolve(service, std::move(cb)); });
}

std::vector<std::string> IdsOn(ServiceRegistry& r, const std::string& service) {
    auto res = ResolveOn(r, service);
    EXPECT_TRUE(res.ok()) << (res.ok() ? "" : res.error().message);
    std::vector<std::string> ids;
    if (res.ok()) {
        for (const auto& i : *res) {
            ids.push_back(i.instance_id);
        }
    }
    return ids;
}

// Polls `pred` until it holds or `limit` has passed; true when it held.
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds limit, std::chrono::milliseconds every = 100ms) {
    auto deadline = SteadyClock::now() + limit;
    while (true) {
        if (pred()) {
            return true;
        }
        if (SteadyClock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(every);
    }
}

double SecondsSince(SteadyClock::time_point t) { return std::chrono::duration<double>(SteadyClock::now() - t).count(); }

// A loopback port nothing listens on (bound, then closed).
int ClosedPort() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

// A listening socket that never accepts or answers: connections succeed, requests get no reply.
class SilentServer {
public:
    SilentServer() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        ::listen(fd_, 64);
        socklen_t len = sizeof addr;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
    }
    ~SilentServer() { ::close(fd_); }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

private:
    int fd_ = -1;
    int port_ = 0;
};

std::string Base64(const std::string& in) {
    static const char* chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
        out += {chars[(n >> 18) & 63], chars[(n >> 12) & 63], chars[(n >> 6) & 63], chars[n & 63]};
    }
    if (i + 1 == in.size()) {
        unsigned n = uint8_t(in[i]) << 16;
        out += {chars[(n >> 18) & 63], chars[(n >> 12) & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        unsigned n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
        out += {chars[(n >> 18) & 63], chars[(n >> 12) & 63], chars[(n >> 6) & 63], '='};
    }
    return out;
}

// Another etcd client, written without the adapter's code: one HTTP/1.0 POST over a plain socket.
// Returns the response body ("" on any failure, after recording it).
std::string RawEtcdPost(const std::string& url, const std::string& path, const std::string& body) {
    std::smatch m;
    std::regex re(R"(http://([0-9.]+):([0-9]+))");
    if (!std::regex_match(url, m, re)) {
        ADD_FAILURE() << "RawEtcdPost wants http://ipv4:port, got " << url;
        return "";
    }
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(m[2])));
    ::inet_pton(AF_INET, m[1].str().c_str(), &addr.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        ADD_FAILURE() << "cannot connect to " << url;
        return "";
    }
    std::string req = "POST " + path + " HTTP/1.0\r\nHost: " + m[1].str() + "\r\nContent-Type: application/json\r\n" +
                      "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    std::string resp;
    char buf[4096];
    while (true) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 5000) <= 0) {
            break;
        }
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            break;
        }
        resp.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    size_t split = resp.find("\r\n\r\n");
    if (split == std::string::npos) {
        ADD_FAILURE() << "no HTTP answer from " << url << path;
        return "";
    }
    return resp.substr(split + 4);
}

// The lease id etcd holds `key` under, or "" when the key does not exist.
std::string LeaseOfKey(const std::string& url, const std::string& key) {
    std::string body = RawEtcdPost(url, "/v3/kv/range", R"({"key":")" + Base64(key) + R"("})");
    std::smatch m;
    std::regex re(R"re("lease":"([0-9]+)")re");
    if (std::regex_search(body, m, re)) {
        return m[1];
    }
    return "";
}

// ---- contract suite -----------------------------------------------------------------------------

struct EtcdFactory {
    using Registry = EtcdServiceRegistry;
    std::unique_ptr<Registry> Open() {
        std::string url = test::BackendUrl("FLARE_TEST_ETCD_ENDPOINTS");
        if (url.empty()) {
            return nullptr;
        }
        EtcdRegistryOptions options;
        options.endpoints = url;
        options.key_prefix = prefix;
        return std::make_unique<Registry>(options);
    }
    std::string prefix = "/" + test::UniqueName("flare_contract_");
};

struct StaticFactory {
    using Registry = StaticServiceRegistry;
    std::unique_ptr<Registry> Open() { return std::make_unique<Registry>(StaticEndpoints{}); }
};

}  // namespace

namespace contract {
INSTANTIATE_TYPED_TEST_SUITE_P(Etcd, RegistryContract, EtcdFactory);
INSTANTIATE_TYPED_TEST_SUITE_P(Static, RegistryContract, StaticFactory);
}  // namespace contract

namespace {

// ---- etcd adapter -------------------------------------------------------------------------------

class EtcdRegistryTest : public ::testing::Test {
protected:
    void SetUp() override {
        Init();
        ASSERT_FALSE(url_.empty());
    }
    void Init() {
        FLARE_REQUIRE_BACKEND(url, "FLARE_TEST_ETCD_ENDPOINTS");
        url_ = url;
    }

    std::unique_ptr<EtcdServiceRegistry> Open(std::string endpoints = "", std::chrono::milliseconds timeout = 2000ms) {
        EtcdRegistryOptions options;
        options.endpoints = endpoints.empty() ? url_ : endpoints;
        options.key_prefix = prefix_;
        options.timeout = timeout;
        return std::make_unique<EtcdServiceRegistry>(options);
    }
    std::string Key(const std::string& service, const std::string& id) const {
        return prefix_ + "/services/" + service + "/" + id;
    }
    bool Sees(ServiceRegistry& r, const std::string& service, const std::string& id) {
        auto ids = IdsOn(r, service);
        return std::find(ids.begin(), ids.end(), id) != ids.end();
    }

    std::string url_;
    std::string prefix_ = "/" + test::UniqueName("flare_reg_");
};

TEST_F(EtcdRegistryTest, TwoInstancesResolveOrderedAndAnotherClientSeesThem) {
    auto a = Open();
    ASSERT_TRUE(RegisterOn(*a, MakeInstance("message-orchestrator", "mo-2", "127.0.0.1:50082", "eu-2"), 10s).ok());
    ASSERT_TRUE(RegisterOn(*a, MakeInstance("message-orchestrator", "mo-1", "127.0.0.1:50081", "eu-1"), 10s).ok());
    // A second registry object is a second process's view: it shares only etcd.
    auto b = Open();
    for (ServiceRegistry* r : {static_cast<ServiceRegistry*>(a.get()), static_cast<ServiceRegistry*>(b.get())}) {
        auto res = ResolveOn(*r, "message-orchestrator");
        ASSERT_TRUE(res.ok()) << res.error().message;
        ASSERT_EQ(res->size(), 2u);
        EXPECT_EQ((*res)[0].instance_id, "mo-1");
        EXPECT_EQ((*res)[0].endpoint, "127.0.0.1:50081");
        EXPECT_EQ((*res)[0].region, "eu-1");
        EXPECT_EQ((*res)[0].service, "message-orchestrator");
        EXPECT_EQ((*res)[1].instance_id, "mo-2");
        EXPECT_EQ((*res)[1].endpoint, "127.0.0.1:50082");
    }
    // The key layout is <prefix>/services/<service>/<instance_id>, on a lease.
    EXPECT_NE(LeaseOfKey(url_, Key("message-orchestrator", "mo-1")), "");
}

TEST_F(EtcdRegistryTest, DeregisterRemovesTheInstanceForEveryClient) {
    auto a = Open();
    auto b = Open();
    ASSERT_TRUE(RegisterOn(*a, MakeInstance("session", "s1", "127.0.0.1:50090"), 10s).ok());
    ASSERT_TRUE(RegisterOn(*a, MakeInstance("session", "s2", "127.0.0.1:50091"), 10s).ok());
    ASSERT_TRUE(DeregisterOn(*a, "session", "s1").ok());
    EXPECT_EQ(IdsOn(*b, "session"), std::vector<std::string>{"s2"});
    EXPECT_EQ(LeaseOfKey(url_, Key("session", "s1")), "");
    // The lease vanished behind the registry's back (revoked by someone else): still a clean removal.
    ASSERT_TRUE(RegisterOn(*a, MakeInstance("session", "s3", "127.0.0.1:50092"), 10s).ok());
    std::string lease = LeaseOfKey(url_, Key("session", "s3"));
    ASSERT_NE(lease, "");
    RawEtcdPost(url_, "/v3/lease/revoke", R"({"ID":")" + lease + R"("})");
    Status gone = DeregisterOn(*a, "session", "s3");
    EXPECT_TRUE(gone.ok()) << gone.error().message;
    EXPECT_EQ(LeaseOfKey(url_, Key("session", "s3")), "");
    // Another process may remove an instance it did not register (an operator's clean-up).
    ASSERT_TRUE(DeregisterOn(*b, "session", "s2").ok());
    EXPECT_TRUE(IdsOn(*a, "session").empty());
}

TEST_F(EtcdRegistryTest, DestroyedWithoutDeregisterDisappearsWithinTtl) {
    auto b = Open();
    auto a = Open();
    ASSERT_TRUE(RegisterOn(*a, MakeInstance("push", "p1", "127.0.0.1:50100"), 2s).ok());
    ASSERT_TRUE(Sees(*b, "push", "p1"));
    a.reset();  // like a crash: keepalives end, nothing is revoked
    auto destroyed = SteadyClock::now();
    EXPECT_TRUE(Sees(*b, "push", "p1")) << "destruction must not revoke: a crash cannot either";
    ASSERT_TRUE(WaitFor([&] { return !Sees(*b, "push", "p1"); }, 4s))
        << "the entry outlived its 2 s TTL by more than 2 s";
    double gone_after = SecondsSince(destroyed);
    // At most TTL/3 passed since the last keepalive, so at least 2 - 0.67 s of lease were left.
    EXPECT_GE(gone_after, 1.0);
    EXPECT_LE(gone_after, 4.0);
}

TEST_F(EtcdRegistryTest, KilledProcessDisappearsWithinTtl) {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    EtcdRegistryOptions options;
    options.endpoints = url_;
    options.key_prefix = prefix_;
    // Forked before this process starts any thread, so the child is an ordinary single-threaded process.
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::close(ready[0]);
        auto* r = new EtcdServiceRegistry(options);
        std::promise<Status> p;
        r->Register(MakeInstance("gateway", "gw-killed", "127.0.0.1:50200"), 2s, [&p](Status s) { p.set_value(s); });
        char c = p.get_future().get().ok() ? 'y' : 'n';
        (void)!::write(ready[1], &c, 1);
        while (true) {
            ::pause();  // keepalives continue on the registry's thread until SIGKILL
        }
    }
    ::close(ready[1]);
    pollfd p{ready[0], POLLIN, 0};
    char c = 0;
    bool got = ::poll(&p, 1, 10000) == 1 && ::read(ready[0], &c, 1) == 1;
    ::close(ready[0]);
    if (!got || c != 'y') {
        ::kill(child, SIGKILL);
        ::waitpid(child, nullptr, 0);
        FAIL() << "the child process did not register";
    }
    auto b = Open();
    // Alive past one TTL while the child keeps it alive.
    std::this_thread::sleep_for(2500ms);
    EXPECT_TRUE(Sees(*b, "gateway", "gw-killed"));
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status));
    auto killed = SteadyClock::now();
    ASSERT_TRUE(WaitFor([&] { return !Sees(*b, "gateway", "gw-killed"); }, 4s))
        << "the killed process's entry outlived its 2 s TTL by more than 2 s";
    EXPECT_LE(SecondsSince(killed), 4.0);
}

TEST_F(EtcdRegistryTest, KeepaliveHoldsTheInstancePastSeveralTtls) {
    auto a = Open();
    auto b = Open();
    ASSERT_TRUE(RegisterOn(*a, MakeInstance("hooks", "h1", "127.0.0.1:50300"), 1s).ok());
    auto start = SteadyClock::now();
    int polls = 0;
    while (SecondsSince(start) < 4.5) {  // four and a half TTLs
        ASSERT_TRUE(Sees(*b, "hooks", "h1")) << "lost after " << SecondsSince(start) << " s";
        ++polls;
        std::this_thread::sleep_for(150ms);
    }
    EXPECT_GE(polls, 10);
}

TEST_F(EtcdRegistryTest, LeaseLostInEtcdIsGrantedAgainAndTheKeyPutBack) {
    auto a = Open();
    auto b = Open();
    ASSERT_TRUE(RegisterOn(*a, MakeInstance("storage-writer", "w1", "127.0.0.1:50400"), 2s).ok());
    const std::string key = Key("storage-writer", "w1");
    std::string lease = LeaseOfKey(url_, key);
    ASSERT_NE(lease, "");
    // Another client revokes the lease, as an etcd that lost it would: the key goes with it.
    RawEtcdPost(url_, "/v3/lease/revoke", R"({"ID":")" + lease + R"("})");
    // The next keepalive (every 2/3 s) finds the lease gone, grants a new one and puts the key back.
    ASSERT_TRUE(WaitFor([&] { return Sees(*b, "storage-writer", "w1"); }, 3s));
    std::string new_lease = LeaseOfKey(url_, key);
    EXPECT_NE(new_lease, "");
    EXPECT_NE(new_lease, lease);
    auto res = ResolveOn(*b, "storage-writer");
    ASSERT_TRUE(res.ok());
    ASSERT_EQ(res->size(), 1u);
    EXPECT_EQ((*res)[0].endpoint, "127.0.0.1:50400");
    // And the new lease is kept alive as well.
    std::this_thread::sleep_for(2500ms);
    EXPECT_TRUE(Sees(*b, "storage-writer", "w1"));
}

TEST_F(EtcdRegistryTest, UnreachableEtcdFailsFastWithUnavailable) {
    const std::string dead = "http://127.0.0.1:" + std::to_string(ClosedPort());
    auto r = Open(dead, 2000ms);
    auto start = SteadyClock::now();
    Status s = RegisterOn(*r, MakeInstance("session", "s1", "127.0.0.1:50090"), 2s);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, Errc::kUnavailable);
    EXPECT_EQ(s.error().reason, "etcd_unavailable");
    EXPECT_NE(s.error().message.find(dead), std::string::npos) << s.error().message;
    auto resolved = ResolveOn(*r, "session");
    ASSERT_FALSE(resolved.ok());
    EXPECT_EQ(resolved.error().code, Errc::kUnavailable);
    Status d = DeregisterOn(*r, "session", "s1");
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.error().code, Errc::kUnavailable);
    EXPECT_LT(SecondsSince(start), 2.0) << "a refused connection must not wait for the timeout";
}

TEST_F(EtcdRegistryTest, SilentEtcdTimesOutWithinTheTimeout) {
    SilentServer silent;
    auto r = Open(silent.url(), 400ms);
    auto start = SteadyClock::now();
    auto res = ResolveOn(*r, "session");
    double took = SecondsSince(start);
    ASSERT_FALSE(res.ok());
    EXPECT_EQ(res.error().code, Errc::kDeadlineExceeded);
    EXPECT_EQ(res.error().reason, "etcd_timeout");
    EXPECT_NE(res.error().message.find(silent.url()), std::string::npos) << res.error().message;
    EXPECT_GE(took, 0.35);
    EXPECT_LE(took, 1.5);
}

TEST_F(EtcdRegistryTest, FailsOverToTheNextEndpoint) {
    const std::string dead = "http://127.0.0.1:" + std::to_string(ClosedPort());
    auto a = Open(dead + "," + url_);
    Status registered = RegisterOn(*a, MakeInstance("session", "s1", "127.0.0.1:50090"), 2s);
    ASSERT_TRUE(registered.ok()) << registered.error().message;
    EXPECT_EQ(IdsOn(*a, "session"), std::vector<std::string>{"s1"});
    // Keepalives go to the live endpoint too.
    std::this_thread::sleep_for(2500ms);
    EXPECT_EQ(IdsOn(*a, "session"), std::vector<std::string>{"s1"});

    // A silent first endpoint uses up one call's time budget; the next call starts at the next endpoint.
    SilentServer silent;
    auto b = Open(silent.url() + "," + url_, 500ms);
    auto first = ResolveOn(*b, "session");
    ASSERT_FALSE(first.ok());
    EXPECT_EQ(first.error().code, Errc::kDeadlineExceeded);
    auto second = ResolveOn(*b, "session");
    ASSERT_TRUE(second.ok()) << second.error().message;
    ASSERT_EQ(second->size(), 1u);
}

TEST_F(EtcdRegistryTest, StopRunsQueuedCallsRevokesAtOnceAndRefusesLaterCalls) {
    auto a = Open();
    auto b = Open();
    constexpr int kN = 10;
    std::vector<std::shared_ptr<std::promise<Status>>> done;
    for (int i = 0; i < kN; ++i) {
        auto p = std::make_shared<std::promise<Status>>();
        done.push_back(p);
        a->Register(MakeInstance("orch", "o" + std::to_string(i), "127.0.0.1:5000" + std::to_string(i)), 30s,
                    [p](Status s) { p->set_value(std::move(s)); });
    }
    a->Stop();  // returns after the queued registers ran and the leases were revoked
    for (auto& p : done) {
        auto f = p->get_future();
        ASSERT_EQ(f.wait_for(0s), std::future_status::ready);
        Status s = f.get();
        EXPECT_TRUE(s.ok()) << s.error().message;
    }
    EXPECT_TRUE(IdsOn(*b, "orch").empty()) << "Stop must revoke, not wait for the 30 s TTL";
    Status late = RegisterOn(*a, MakeInstance("orch", "late", "127.0.0.1:1"), 30s);
    ASSERT_FALSE(late.ok());
    EXPECT_EQ(late.error().code, Errc::kUnavailable);
    EXPECT_EQ(late.error().reason, "registry_stopped");
    a->Stop();  // idempotent
}

TEST_F(EtcdRegistryTest, EveryCallbackRunsExactlyOnceWhenDestroyedWithCallsQueued) {
    SilentServer silent;
    auto r = Open(silent.url(), 500ms);
    constexpr int kN = 30;
    auto counts = std::make_shared<std::vector<std::atomic<int>>>(kN);
    auto stopped = std::make_shared<std::atomic<int>>(0);
    auto main_thread = std::this_thread::get_id();
    auto inline_calls = std::make_shared<std::atomic<int>>(0);
    for (int i = 0; i < kN; ++i) {
        auto record = [counts, stopped, inline_calls, main_thread, i](const Error* e) {
            (*counts)[i].fetch_add(1);
            if (e != nullptr && e->reason == "registry_stopped") {
                stopped->fetch_add(1);
            }
            if (std::this_thread::get_id() == main_thread) {
                inline_calls->fetch_add(1);
            }
        };
        if (i % 3 == 0) {
            r->Register(MakeInstance("svc", "i" + std::to_string(i), "127.0.0.1:1"), 1s,
                        [record](Status s) { record(s.ok() ? nullptr : &s.error()); });
        } else if (i % 3 == 1) {
            r->Resolve("svc", [record](Result<std::vector<ServiceInstance>> res) {
                record(res.ok() ? nullptr : &res.error());
            });
        } else {
            r->Deregister("svc", "i" + std::to_string(i),
                          [record](Status s) { record(s.ok() ? nullptr : &s.error()); });
        }
    }
    std::this_thread::sleep_for(100ms);  // the worker has sent the first call and waits for its answer
    auto start = SteadyClock::now();
    r.reset();
    // The call in flight ends at its 500 ms deadline; the queued ones are failed, not sent.
    EXPECT_LE(SecondsSince(start), 1.0);
    for (int i = 0; i < kN; ++i) {
        EXPECT_EQ((*counts)[i].load(), 1) << "call " << i;
    }
    EXPECT_EQ(stopped->load(), kN - 1);
    EXPECT_EQ(inline_calls->load(), 0) << "completions run on the registry's thread";
}

TEST(EtcdEndpointsTest, ParsesCommaListsAndRefusesMalformedEntries) {
    auto good = ParseEtcdEndpoints(" http://127.0.0.1:2379, http://etcd-2:22379/ ,http://[::1]:2379");
    ASSERT_TRUE(good.ok()) << good.error().message;
    ASSERT_EQ(good->size(), 3u);
    EXPECT_EQ((*good)[0].url, "http://127.0.0.1:2379");
    EXPECT_EQ((*good)[0].host, "127.0.0.1");
    EXPECT_EQ((*good)[0].port, "2379");
    EXPECT_EQ((*good)[1].url, "http://etcd-2:22379");
    EXPECT_EQ((*good)[1].host, "etcd-2");
    EXPECT_EQ((*good)[2].host, "::1");
    EXPECT_EQ((*good)[2].port, "2379");
    for (const char* bad : {"", " , ", "127.0.0.1:2379", "https://127.0.0.1:2379", "http://127.0.0.1",
                            "http://127.0.0.1:99999", "http://:2379", "http://h:2379/v3", "http://h:2379,ftp://x:1"}) {
        auto r = ParseEtcdEndpoints(bad);
        ASSERT_FALSE(r.ok()) << "'" << bad << "'";
        EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
        EXPECT_EQ(r.error().reason, "bad_etcd_endpoints");
    }
    EtcdRegistryOptions options;
    options.endpoints = "localhost:2379";
    EXPECT_THROW(EtcdServiceRegistry{options}, std::invalid_argument);
}

// ---- static registry ----------------------------------------------------------------------------

TEST(StaticRegistryTest, ParsesTheEndpointList) {
    auto r = ParseStaticEndpoints("session=127.0.0.1:50090;message-orchestrator=127.0.0.1:50081,127.0.0.1:50082");
    ASSERT_TRUE(r.ok()) << r.error().message;
    StaticEndpoints want{{"session", {"127.0.0.1:50090"}},
                         {"message-orchestrator", {"127.0.0.1:50081", "127.0.0.1:50082"}}};
    EXPECT_EQ(*r, want);

    auto spaced = ParseStaticEndpoints(" session = 127.0.0.1:50090 ; push=[::1]:7000 , host-b:7001 ;");
    ASSERT_TRUE(spaced.ok()) << spaced.error().message;
    StaticEndpoints want_spaced{{"session", {"127.0.0.1:50090"}}, {"push", {"[::1]:7000", "host-b:7001"}}};
    EXPECT_EQ(*spaced, want_spaced);

    auto empty = ParseStaticEndpoints("");
    ASSERT_TRUE(empty.ok());
    EXPECT_TRUE(empty->empty());
}

TEST(StaticRegistryTest, RefusesMalformedEndpointLists) {
    struct Case {
        const char* text;
        const char* mentions;  // part of the message that points at the mistake
    };
    for (const Case& c : std::vector<Case>{
             {"session", "'session'"},
             {"=127.0.0.1:1", "service is empty"},
             {"session=", "empty endpoint"},
             {"session=127.0.0.1:1,", "empty endpoint"},
             {"session=127.0.0.1", "'127.0.0.1' is not host:port"},
             {"session=127.0.0.1:http", "port in 1..65535"},
             {"session=127.0.0.1:70000", "port in 1..65535"},
             {"session=:50090", "has no host"},
             {"session=::1:50090", "brackets"},
             {"a/b=127.0.0.1:1", "'a/b'"},
             {"my service=127.0.0.1:1", "'my service'"},
             {"a=127.0.0.1:1;a=127.0.0.1:2", "listed twice"},
             {"a=127.0.0.1:1,127.0.0.1:1", "twice"},
             {"session=127.0.0.1:50090;orch", "'orch'"},
         }) {
        auto r = ParseStaticEndpoints(c.text);
        ASSERT_FALSE(r.ok()) << "'" << c.text << "' was accepted";
        EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << c.text;
        EXPECT_EQ(r.error().reason, "bad_static_endpoints") << c.text;
        EXPECT_NE(r.error().message.find(c.mentions), std::string::npos) << "'" << c.text << "': " << r.error().message;
    }
}

TEST(StaticRegistryTest, ResolvesConfiguredEndpointsAndWhatIsRegistered) {
    auto parsed = ParseStaticEndpoints("session=127.0.0.1:50090;message-orchestrator=127.0.0.1:50082,127.0.0.1:50081");
    ASSERT_TRUE(parsed.ok());
    StaticServiceRegistry registry(*parsed, "local");
    auto res = ResolveOn(registry, "message-orchestrator");
    ASSERT_TRUE(res.ok());
    ASSERT_EQ(res->size(), 2u);
    EXPECT_EQ((*res)[0].service, "message-orchestrator");
    EXPECT_EQ((*res)[0].instance_id, "127.0.0.1:50081");  // a static instance is named by its endpoint
    EXPECT_EQ((*res)[0].endpoint, "127.0.0.1:50081");
    EXPECT_EQ((*res)[0].region, "local");
    EXPECT_EQ((*res)[1].endpoint, "127.0.0.1:50082");
    EXPECT_EQ(IdsOn(registry, "session"), std::vector<std::string>{"127.0.0.1:50090"});
    EXPECT_TRUE(IdsOn(registry, "push").empty());

    ASSERT_TRUE(RegisterOn(registry, MakeInstance("session", "s-dyn", "127.0.0.1:50099"), 10s).ok());
    EXPECT_EQ(IdsOn(registry, "session"), (std::vector<std::string>{"127.0.0.1:50090", "s-dyn"}));
    ASSERT_TRUE(DeregisterOn(registry, "session", "127.0.0.1:50090").ok());
    EXPECT_EQ(IdsOn(registry, "session"), std::vector<std::string>{"s-dyn"});
}

}  // namespace
}  // namespace flare
