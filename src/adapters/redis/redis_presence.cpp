#include "adapters/redis/redis_presence.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>
#include <stdexcept>

namespace flare {

namespace {

constexpr const char* kUnavailableReason = "presence_unavailable";
constexpr size_t kUsersPerLookup = 128;  // users per LOOKUP script call (a script blocks Redis while it runs)

// The user's keys and the tenant's online set are settled together: the online set holds each user
// with the expiry of its last device and expires with its last user.
constexpr std::string_view kSettleUser = R"lua(
local function settle_user(h, e, o, user, now)
  local exp = settle_expiring(h, e, now)
  if exp then
    redis.call('ZADD', o, exp, user)
    if redis.call('PEXPIRETIME', o) < tonumber(exp) then
      redis.call('PEXPIREAT', o, exp)
    end
  else
    redis.call('ZREM', o, user)
  end
  redis.call('ZREMRANGEBYSCORE', o, '-inf', ms(now))
end
local function live_record(h, e, device, now)
  local exp = redis.call('ZSCORE', e, device)
  if exp and tonumber(exp) > now then
    return redis.call('HGET', h, device)
  end
  return false
end
)lua";

// KEYS: session, session_exp, online. ARGV: device, record, ttl ms, user. Returns the replaced live
// record or nil.
constexpr std::string_view kRegister = R"lua(
local now = now_ms()
local old = live_record(KEYS[1], KEYS[2], ARGV[1], now)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ms(now + tonumber(ARGV[3])), ARGV[1])
settle_user(KEYS[1], KEYS[2], KEYS[3], ARGV[4], now)
return old
)lua";

// KEYS: session, session_exp, online. ARGV: device, owner (record prefix), user. Returns 1 if removed.
constexpr std::string_view kUnregister = R"lua(
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur or string.sub(cur, 1, #ARGV[2]) ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
settle_user(KEYS[1], KEYS[2], KEYS[3], ARGV[3], now_ms())
return 1
)lua";

// KEYS: session, session_exp, online. ARGV: device, owner, record, ttl ms, user. Returns 0 when a live
// record of another connection holds the device, else 1.
constexpr std::string_view kRefresh = R"lua(
local now = now_ms()
local cur = live_record(KEYS[1], KEYS[2], ARGV[1], now)
if cur and string.sub(cur, 1, #ARGV[2]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ms(now + tonumber(ARGV[4])), ARGV[1])
settle_user(KEYS[1], KEYS[2], KEYS[3], ARGV[5], now)
return 1
)lua";

// KEYS: session, session_exp of each user in turn. Returns the live records, user by user.
constexpr std::string_view kLookup = R"lua(
local after = '(' .. ms(now_ms())
local out = {}
for i = 1, #KEYS, 2 do
  local devices = redis.call('ZRANGEBYSCORE', KEYS[i + 1], after, '+inf')
  if #devices > 0 then
    local records = redis.call('HMGET', KEYS[i], unpack(devices))
    for _, r in ipairs(records) do
      if r then
        out[#out + 1] = r
      end
    end
  end
end
return out
)lua";

// KEYS: online. Returns the users with a live device.
constexpr std::string_view kTenantUsers = R"lua(
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ms(now_ms()), '+inf')
)lua";

enum Script : int { kRegisterScript, kUnregisterScript, kRefreshScript, kLookupScript, kTenantUsersScript };

std::vector<std::string> Scripts() {
    auto full = [](std::string_view body) {
        return std::string(kRedisLuaPrelude) + std::string(kSettleUser) + std::string(body);
    };
    return {full(kRegister), full(kUnregister), full(kRefresh), full(kLookup), full(kTenantUsers)};
}

// Key parts are ids of any bytes: escaping ':' keeps "a:b"+"c" and "a"+"b:c" apart.
std::string Escape(const std::string& part) {
    std::string out;
    out.reserve(part.size());
    for (char c : part) {
        if (c == '%') {
            out += "%25";
        } else if (c == ':') {
            out += "%3A";
        } else {
            out += c;
        }
    }
    return out;
}

std::string Owner(const std::string& gateway_id, uint64_t connection_id) {
    return EncodeRecord({gateway_id, std::to_string(connection_id)});
}

// Owner fields first, so the scripts can compare the owner as a prefix.
std::string Encode(const DeviceSession& s) {
    const std::string conn = std::to_string(s.connection_id);
    const std::string since = std::to_string(s.since_ms);
    return EncodeRecord({s.gateway_id, conn, s.tenant_id, s.user_id, s.device_id, s.platform, s.region, since});
}

template <typename T>
bool ParseNumber(std::string_view s, T& out) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && end == s.data() + s.size();
}

std::optional<DeviceSession> Decode(std::string_view record) {
    std::vector<std::string_view> f;
    DeviceSession s;
    if (!DecodeRecord(record, f) || f.size() != 8 || !ParseNumber(f[1], s.connection_id) ||
        !ParseNumber(f[7], s.since_ms)) {
        spdlog::warn("redis presence: skipping a record that is not a device session ({} bytes)", record.size());
        return std::nullopt;
    }
    s.gateway_id = f[0];
    s.tenant_id = f[2];
    s.user_id = f[3];
    s.device_id = f[4];
    s.platform = f[5];
    s.region = f[6];
    return s;
}

Status ToStatus(const Result<std::vector<RedisReply>>& r) {
    if (!r.ok()) {
        return r.error();
    }
    return Status{};
}

}  // namespace

RedisPresenceRegistry::RedisPresenceRegistry(RedisOptions options)
    : options_(std::move(options)), ttl_ms_(std::to_string(options_.presence_ttl.count())) {
    if (options_.presence_ttl <= std::chrono::milliseconds::zero()) {
        throw std::invalid_argument("Redis presence TTL must be positive, not " + ttl_ms_ + " ms");
    }
    client_ = std::make_unique<RedisClient>(options_, kUnavailableReason, Scripts());
}

RedisPresenceRegistry::~RedisPresenceRegistry() { Stop(); }

void RedisPresenceRegistry::Start() { client_->Start(); }

void RedisPresenceRegistry::Stop() { client_->Stop(); }

std::vector<std::string> RedisPresenceRegistry::UserKeys(const std::string& tenant_id,
                                                         const std::string& user_id) const {
    const std::string tenant = Escape(tenant_id);
    const std::string suffix = tenant + ":" + Escape(user_id);
    return {options_.key_prefix + "session:" + suffix, options_.key_prefix + "session_exp:" + suffix,
            options_.key_prefix + "online:" + tenant};
}

void RedisPresenceRegistry::Register(DeviceSession session, Callback<std::optional<DeviceSession>> done) {
    auto cmd = RedisCommand::Script(kRegisterScript, UserKeys(session.tenant_id, session.user_id),
                                    {session.device_id, Encode(session), ttl_ms_, session.user_id});
    client_->Submit({std::move(cmd)}, [done = std::move(done)](Result<std::vector<RedisReply>> r) {
        if (!r.ok()) {
            done(r.error());
            return;
        }
        const RedisReply& reply = r->front();
        std::optional<DeviceSession> replaced;
        if (reply.type == RedisReply::Type::kString) {
            replaced = Decode(reply.str);
        }
        done(std::move(replaced));
    });
}

void RedisPresenceRegistry::Unregister(std::string tenant_id, std::string user_id, std::string device_id,
                                       std::string gateway_id, uint64_t connection_id) {
    auto cmd = RedisCommand::Script(kUnregisterScript, UserKeys(tenant_id, user_id),
                                    {device_id, Owner(gateway_id, connection_id), user_id});
    client_->Submit({std::move(cmd)}, [device_id, connection_id](Result<std::vector<RedisReply>> r) {
        if (!r.ok()) {
            spdlog::warn("redis presence: could not unregister device {} (connection {}): {}", device_id, connection_id,
                         r.error().message);
        }
    });
}

void RedisPresenceRegistry::Lookup(std::string tenant_id, std::shared_ptr<const std::vector<std::string>> user_ids,
                                   Callback<std::vector<DeviceSession>> done) {
    if (!user_ids) {
        done(std::vector<DeviceSession>{});
        return;
    }
    LookupUsers(tenant_id, *user_ids, std::move(done));
}

void RedisPresenceRegistry::LookupUsers(const std::string& tenant_id, const std::vector<std::string>& user_ids,
                                        Callback<std::vector<DeviceSession>> done) {
    std::vector<RedisCommand> cmds;
    for (size_t i = 0; i < user_ids.size(); i += kUsersPerLookup) {
        std::vector<std::string> keys;
        for (size_t j = i; j < std::min(user_ids.size(), i + kUsersPerLookup); ++j) {
            auto k = UserKeys(tenant_id, user_ids[j]);
            keys.push_back(std::move(k[0]));
            keys.push_back(std::move(k[1]));
        }
        cmds.push_back(RedisCommand::Script(kLookupScript, keys, {}));
    }
    client_->Submit(std::move(cmds), [done = std::move(done)](Result<std::vector<RedisReply>> r) {
        if (!r.ok()) {
            done(r.error());
            return;
        }
        std::vector<DeviceSession> out;
        for (const RedisReply& reply : *r) {
            for (const RedisReply& rec : reply.elements) {
                if (auto s = Decode(rec.str)) {
                    out.push_back(std::move(*s));
                }
            }
        }
        done(std::move(out));
    });
}

void RedisPresenceRegistry::ListTenant(std::string tenant_id, Callback<std::vector<DeviceSession>> done) {
    auto cmd = RedisCommand::Script(kTenantUsersScript, {options_.key_prefix + "online:" + Escape(tenant_id)}, {});
    // Runs on the worker thread; the second step is queued behind whatever arrived meanwhile.
    client_->Submit({std::move(cmd)}, [this, tenant_id, done = std::move(done)](Result<std::vector<RedisReply>> r) {
        if (!r.ok()) {
            done(r.error());
            return;
        }
        std::vector<std::string> users;
        for (RedisReply& u : r->front().elements) {
            users.push_back(std::move(u.str));
        }
        LookupUsers(tenant_id, users, std::move(done));
    });
}

void RedisPresenceRegistry::Refresh(std::vector<DeviceSession> sessions, StatusCallback done) {
    std::vector<RedisCommand> cmds;
    cmds.reserve(sessions.size());
    for (const DeviceSession& s : sessions) {
        cmds.push_back(
            RedisCommand::Script(kRefreshScript, UserKeys(s.tenant_id, s.user_id),
                                 {s.device_id, Owner(s.gateway_id, s.connection_id), Encode(s), ttl_ms_, s.user_id}));
    }
    client_->Submit(std::move(cmds),
                    [done = std::move(done)](Result<std::vector<RedisReply>> r) { done(ToStatus(r)); });
}

}  // namespace flare
