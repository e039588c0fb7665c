// RedisGatewayRouteStore against a real Redis (the `infra` fixture's): upsert/get/list/remove, TTL
// expiry and its restart on upsert, ordering by gateway id, and failures while Redis is unreachable.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <random>
#include <stdexcept>
#include <thread>

#include "adapters/redis/redis_gateway_routes.hpp"
#include "backend/backend_env.hpp"

namespace flare {
namespace {

using namespace std::chrono_literals;

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

int FreePort() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        throw std::runtime_error("cannot find a free port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

GatewayRoute Route(std::string id, std::string region, std::string endpoint) {
    return GatewayRoute{std::move(id), std::move(region), std::move(endpoint)};
}

void ExpectRoute(const GatewayRoute& got, const GatewayRoute& want) {
    EXPECT_EQ(got.gateway_id, want.gateway_id);
    EXPECT_EQ(got.region, want.region);
    EXPECT_EQ(got.endpoint, want.endpoint);
}

std::vector<std::string> Ids(const std::vector<GatewayRoute>& routes) {
    std::vector<std::string> ids;
    for (const auto& r : routes) {
        ids.push_back(r.gateway_id);
    }
    return ids;
}

class RedisGatewayRoutesTest : public ::testing::Test {
protected:
    void SetUp() override {
        FLARE_REQUIRE_BACKEND(url, "FLARE_TEST_REDIS_URL");
        url_ = url;
        prefix_ = test::UniqueName("flare_routes_") + ":";
        store_ = Open(url_);
    }

    std::unique_ptr<RedisGatewayRouteStore> Open(const std::string& url, std::chrono::milliseconds timeout = 2s) {
        RedisOptions options;
        options.url = url;
        options.key_prefix = prefix_;
        options.command_timeout = timeout;
        auto s = std::make_unique<RedisGatewayRouteStore>(options);
        s->Start();
        return s;
    }

    static Status Upsert(RedisGatewayRouteStore& s, GatewayRoute route, std::chrono::milliseconds ttl) {
        auto p = std::make_shared<std::promise<Status>>();
        auto f = p->get_future();
        s.Upsert(std::move(route), ttl, [p](Status st) { p->set_value(std::move(st)); });
        return f.get();
    }
    static Status Remove(RedisGatewayRouteStore& s, const std::string& id) {
        auto p = std::make_shared<std::promise<Status>>();
        auto f = p->get_future();
        s.Remove(id, [p](Status st) { p->set_value(std::move(st)); });
        return f.get();
    }
    static Result<std::optional<GatewayRoute>> Get(RedisGatewayRouteStore& s, const std::string& id) {
        auto p = std::make_shared<std::promise<Result<std::optional<GatewayRoute>>>>();
        auto f = p->get_future();
        s.Get(id, [p](Result<std::optional<GatewayRoute>> r) { p->set_value(std::move(r)); });
        return f.get();
    }
    static Result<std::vector<GatewayRoute>> List(RedisGatewayRouteStore& s) {
        auto p = std::make_shared<std::promise<Result<std::vector<GatewayRoute>>>>();
        auto f = p->get_future();
        s.List([p](Result<std::vector<GatewayRoute>> r) { p->set_value(std::move(r)); });
        return f.get();
    }
    // Whether the route is live, false on an error too.
    bool Known(const std::string& id) {
        auto r = Get(*store_, id);
        return r.ok() && r->has_value();
    }

    std::string url_;
    std::string prefix_;
    std::unique_ptr<RedisGatewayRouteStore> store_;
};

TEST_F(RedisGatewayRoutesTest, UpsertGetListRemove) {
    auto b = Route("gw-shanghai-1", "shanghai", "127.0.0.1:60054");
    auto a = Route("gw-beijing-1", "beijing", "127.0.0.1:60053");
    auto c = Route("gw-shenzhen-1", "", "[::1]:60055");
    for (const auto& r : {b, a, c}) {
        auto s = Upsert(*store_, r, 10s);
        ASSERT_TRUE(s.ok()) << s.error().message;
    }
    auto got = Get(*store_, "gw-beijing-1");
    ASSERT_TRUE(got.ok()) << got.error().message;
    ASSERT_TRUE(got->has_value());
    ExpectRoute(**got, a);
    auto unknown = Get(*store_, "gw-nowhere");
    ASSERT_TRUE(unknown.ok());
    EXPECT_FALSE(unknown->has_value());

    auto list = List(*store_);
    ASSERT_TRUE(list.ok());
    ASSERT_EQ(list->size(), 3u);
    ExpectRoute((*list)[0], a);
    ExpectRoute((*list)[1], b);
    ExpectRoute((*list)[2], c);

    auto moved = Route("gw-beijing-1", "beijing", "10.0.0.7:60053");
    ASSERT_TRUE(Upsert(*store_, moved, 10s).ok());
    got = Get(*store_, "gw-beijing-1");
    ASSERT_TRUE(got.ok());
    ASSERT_TRUE(got->has_value());
    ExpectRoute(**got, moved);

    ASSERT_TRUE(Remove(*store_, "gw-shanghai-1").ok());
    EXPECT_FALSE(Known("gw-shanghai-1"));
    list = List(*store_);
    ASSERT_TRUE(list.ok());
    EXPECT_EQ(Ids(*list), (std::vector<std::string>{"gw-beijing-1", "gw-shenzhen-1"}));
    EXPECT_TRUE(Remove(*store_, "gw-shanghai-1").ok()) << "removing twice is not an error";
    EXPECT_TRUE(Remove(*store_, "gw-never").ok());
    ASSERT_TRUE(Remove(*store_, "gw-beijing-1").ok());
    ASSERT_TRUE(Remove(*store_, "gw-shenzhen-1").ok());
    list = List(*store_);
    ASSERT_TRUE(list.ok());
    EXPECT_TRUE(list->empty());
}

TEST_F(RedisGatewayRoutesTest, RoutesExpireAfterTheirTtlAndUpsertRestartsIt) {
    constexpr auto kShort = 300ms;
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(Upsert(*store_, Route("gw-short", "beijing", "h:1"), kShort).ok());
    ASSERT_TRUE(Upsert(*store_, Route("gw-restarted", "beijing", "h:2"), kShort).ok());
    ASSERT_TRUE(Upsert(*store_, Route("gw-restarted", "beijing", "h:2"), 30s).ok());
    ASSERT_TRUE(Upsert(*store_, Route("gw-long", "shanghai", "h:3"), 30s).ok());
    auto list = List(*store_);
    ASSERT_TRUE(list.ok());
    if (std::chrono::steady_clock::now() - t0 < kShort) {
        EXPECT_EQ(Ids(*list), (std::vector<std::string>{"gw-long", "gw-restarted", "gw-short"}));
    }
    ASSERT_TRUE(WaitFor([&] { return !Known("gw-short"); }, 5s)) << "a route outlived its TTL";
    EXPECT_GE(std::chrono::steady_clock::now() - t0, kShort - 20ms) << "a route expired before its TTL";
    list = List(*store_);
    ASSERT_TRUE(list.ok());
    EXPECT_EQ(Ids(*list), (std::vector<std::string>{"gw-long", "gw-restarted"}));
    EXPECT_TRUE(Known("gw-restarted"));
}

TEST_F(RedisGatewayRoutesTest, AnAbandonedDirectoryVanishesEntirely) {
    ASSERT_TRUE(Upsert(*store_, Route("gw-1", "beijing", "h:1"), 200ms).ok());
    ASSERT_TRUE(Upsert(*store_, Route("gw-2", "beijing", "h:2"), 300ms).ok());
    RedisOptions raw_options;
    raw_options.url = url_;
    RedisClient raw(raw_options, "test_redis_unavailable");
    raw.Start();
    auto exists = [&] {
        auto p = std::make_shared<std::promise<Result<std::vector<RedisReply>>>>();
        auto f = p->get_future();
        raw.Submit({RedisCommand::Plain({"EXISTS", prefix_ + "gateway_routes", prefix_ + "gateway_routes_exp"})},
                   [p](Result<std::vector<RedisReply>> r) { p->set_value(std::move(r)); });
        auto r = f.get();
        return r.ok() ? r->front().integer : -1;
    };
    EXPECT_TRUE(WaitFor([&] { return exists() == 0; }, 5s)) << "the directory keys do not expire";
    auto list = List(*store_);
    ASSERT_TRUE(list.ok());
    EXPECT_TRUE(list->empty());
}

TEST_F(RedisGatewayRoutesTest, ListIsOrderedByGatewayId) {
    std::vector<std::string> ids;
    for (int i = 0; i < 40; ++i) {
        ids.push_back("gw-" + std::to_string((i * 7919) % 101) + "-" + std::string(1, static_cast<char>('a' + i % 26)));
    }
    std::mt19937 rng(42);
    std::shuffle(ids.begin(), ids.end(), rng);
    for (size_t i = 0; i < ids.size(); ++i) {
        // Different TTLs, so expiry order (the sorted set's order) is not id order.
        ASSERT_TRUE(
            Upsert(*store_, Route(ids[i], "r", "h:" + std::to_string(i)), 10s + std::chrono::milliseconds(i * 37))
                .ok());
    }
    std::sort(ids.begin(), ids.end());
    auto list = List(*store_);
    ASSERT_TRUE(list.ok());
    EXPECT_EQ(Ids(*list), ids);
}

TEST_F(RedisGatewayRoutesTest, ATtlBelowOneMillisecondIsRefused) {
    auto s = Upsert(*store_, Route("gw-1", "beijing", "h:1"), 0ms);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, Errc::kInvalidArgument);
    EXPECT_EQ(s.error().reason, "invalid_ttl");
    EXPECT_FALSE(Known("gw-1"));
}

TEST_F(RedisGatewayRoutesTest, UnreachableRedisFailsFastWithUnavailable) {
    const std::string url = "redis://127.0.0.1:" + std::to_string(FreePort());
    auto store = Open(url, 500ms);
    auto expect_unavailable = [&](const Error& e) {
        EXPECT_EQ(e.code, Errc::kUnavailable);
        EXPECT_EQ(e.reason, "routes_unavailable");
        EXPECT_NE(e.message.find(url), std::string::npos) << e.message;
    };
    const auto start = std::chrono::steady_clock::now();
    auto u = Upsert(*store, Route("gw-1", "beijing", "h:1"), 10s);
    ASSERT_FALSE(u.ok());
    expect_unavailable(u.error());
    auto g = Get(*store, "gw-1");
    ASSERT_FALSE(g.ok());
    expect_unavailable(g.error());
    auto l = List(*store);
    ASSERT_FALSE(l.ok());
    expect_unavailable(l.error());
    auto r = Remove(*store, "gw-1");
    ASSERT_FALSE(r.ok());
    expect_unavailable(r.error());
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(RedisGatewayRoutesTest, StopCompletesEveryCallExactlyOnce) {
    ASSERT_TRUE(Upsert(*store_, Route("gw-1", "beijing", "h:1"), 10s).ok());
    constexpr int kCalls = 2000;
    auto calls = std::make_shared<std::vector<std::atomic<int>>>(kCalls);
    auto bad = std::make_shared<std::atomic<int>>(0);
    for (int i = 0; i < kCalls; ++i) {
        store_->Get("gw-1", [calls, bad, i](Result<std::optional<GatewayRoute>> r) {
            (*calls)[i].fetch_add(1);
            if (r.ok() ? !r->has_value()
                       : r.error().code != Errc::kUnavailable || r.error().reason != "routes_unavailable") {
                bad->fetch_add(1);
            }
        });
    }
    store_->Stop();
    for (int i = 0; i < kCalls; ++i) {
        ASSERT_EQ((*calls)[i].load(), 1) << "call " << i;
    }
    EXPECT_EQ(bad->load(), 0);
    auto after = Get(*store_, "gw-1");
    ASSERT_FALSE(after.ok());
    EXPECT_EQ(after.error().code, Errc::kUnavailable);
    EXPECT_EQ(after.error().reason, "routes_unavailable");
}

}  // namespace
}  // namespace flare
