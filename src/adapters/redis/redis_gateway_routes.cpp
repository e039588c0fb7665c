#include "adapters/redis/redis_gateway_routes.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace flare {

namespace {

constexpr const char* kUnavailableReason = "routes_unavailable";

// KEYS: gateway_routes, gateway_routes_exp. ARGV: id, record, ttl ms.
constexpr std::string_view kUpsert = R"lua(
local now = now_ms()
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ms(now + tonumber(ARGV[3])), ARGV[1])
settle_expiring(KEYS[1], KEYS[2], now)
return 1
)lua";

// KEYS: gateway_routes, gateway_routes_exp. ARGV: id.
constexpr std::string_view kRemove = R"lua(
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
settle_expiring(KEYS[1], KEYS[2], now_ms())
return 1
)lua";

// KEYS: gateway_routes, gateway_routes_exp. ARGV: id. Returns the live record or nil.
constexpr std::string_view kGet = R"lua(
local exp = redis.call('ZSCORE', KEYS[2], ARGV[1])
if exp and tonumber(exp) > now_ms() then
  return redis.call('HGET', KEYS[1], ARGV[1])
end
return false
)lua";

// KEYS: gateway_routes, gateway_routes_exp. Returns the live records.
constexpr std::string_view kList = R"lua(
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ms(now_ms()), '+inf')
local out = {}
for i = 1, #ids, 500 do
  local records = redis.call('HMGET', KEYS[1], unpack(ids, i, math.min(i + 499, #ids)))
  for _, r in ipairs(records) do
    if r then
      out[#out + 1] = r
    end
  end
end
return out
)lua";

enum Script : int { kUpsertScript, kRemoveScript, kGetScript, kListScript };

std::vector<std::string> Scripts() {
    auto full = [](std::string_view body) { return std::string(kRedisLuaPrelude) + std::string(body); };
    return {full(kUpsert), full(kRemove), full(kGet), full(kList)};
}

std::string Encode(const GatewayRoute& r) { return EncodeRecord({r.gateway_id, r.region, r.endpoint}); }

std::optional<GatewayRoute> Decode(std::string_view record) {
    std::vector<std::string_view> f;
    if (!DecodeRecord(record, f) || f.size() != 3) {
        spdlog::warn("redis routes: skipping a record that is not a gateway route ({} bytes)", record.size());
        return std::nullopt;
    }
    return GatewayRoute{std::string(f[0]), std::string(f[1]), std::string(f[2])};
}

void Forward(const StatusCallback& done, const Result<std::vector<RedisReply>>& r) {
    if (!r.ok()) {
        done(r.error());
    } else {
        done(Status{});
    }
}

}  // namespace

RedisGatewayRouteStore::RedisGatewayRouteStore(RedisOptions options)
    : options_(std::move(options)), client_(std::make_unique<RedisClient>(options_, kUnavailableReason, Scripts())) {}

RedisGatewayRouteStore::~RedisGatewayRouteStore() { Stop(); }

void RedisGatewayRouteStore::Start() { client_->Start(); }

void RedisGatewayRouteStore::Stop() { client_->Stop(); }

std::vector<std::string> RedisGatewayRouteStore::Keys() const {
    return {options_.key_prefix + "gateway_routes", options_.key_prefix + "gateway_routes_exp"};
}

void RedisGatewayRouteStore::Upsert(GatewayRoute route, std::chrono::milliseconds ttl, StatusCallback done) {
    if (ttl < std::chrono::milliseconds(1)) {
        done(MakeError(Errc::kInvalidArgument, "invalid_ttl",
                       "a gateway route needs a TTL of at least 1 ms, not " + std::to_string(ttl.count()) + " ms"));
        return;
    }
    auto cmd =
        RedisCommand::Script(kUpsertScript, Keys(), {route.gateway_id, Encode(route), std::to_string(ttl.count())});
    client_->Submit({std::move(cmd)},
                    [done = std::move(done)](Result<std::vector<RedisReply>> r) { Forward(done, r); });
}

void RedisGatewayRouteStore::Remove(std::string gateway_id, StatusCallback done) {
    auto cmd = RedisCommand::Script(kRemoveScript, Keys(), {gateway_id});
    client_->Submit({std::move(cmd)},
                    [done = std::move(done)](Result<std::vector<RedisReply>> r) { Forward(done, r); });
}

void RedisGatewayRouteStore::Get(std::string gateway_id, Callback<std::optional<GatewayRoute>> done) {
    auto cmd = RedisCommand::Script(kGetScript, Keys(), {gateway_id});
    client_->Submit({std::move(cmd)}, [done = std::move(done)](Result<std::vector<RedisReply>> r) {
        if (!r.ok()) {
            done(r.error());
            return;
        }
        std::optional<GatewayRoute> route;
        if (r->front().type == RedisReply::Type::kString) {
            route = Decode(r->front().str);
        }
        done(std::move(route));
    });
}

void RedisGatewayRouteStore::List(Callback<std::vector<GatewayRoute>> done) {
    auto cmd = RedisCommand::Script(kListScript, Keys(), {});
    client_->Submit({std::move(cmd)}, [done = std::move(done)](Result<std::vector<RedisReply>> r) {
        if (!r.ok()) {
            done(r.error());
            return;
        }
        std::vector<GatewayRoute> routes;
        for (const RedisReply& rec : r->front().elements) {
            if (auto route = Decode(rec.str)) {
                routes.push_back(std::move(*route));
            }
        }
        std::sort(routes.begin(), routes.end(),
                  [](const GatewayRoute& a, const GatewayRoute& b) { return a.gateway_id < b.gateway_id; });
        done(std::move(routes));
    });
}

}  // namespace flare
