// Shared plumbing of the Redis adapters (RedisPresenceRegistry, RedisGatewayRouteStore): the options,
// the redis:// URL parser, a binary-safe record codec, and RedisClient, which owns one hiredis
// connection on a worker thread and pipelines whatever is queued. No hiredis type appears here; only
// redis_client.cpp includes it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/errc.hpp"

namespace flare {

struct RedisOptions {
    // redis://[[user]:password@]host[:port][/db]; port 6379 and db 0 when left out.
    std::string url = "redis://127.0.0.1:26379";
    // Put in front of every key, e.g. "staging:" (tests use a unique one); empty by default.
    std::string key_prefix;
    // How long a presence record lives without a Refresh (RedisPresenceRegistry only).
    std::chrono::milliseconds presence_ttl{30'000};
    // Bounds connecting and every read or write of a command; a request therefore fails within about
    // two timeouts when Redis is down or does not answer.
    std::chrono::milliseconds command_timeout{2'000};
};

struct RedisEndpoint {
    std::string host;
    int port = 6379;
    int db = 0;
    std::string username;  // empty: AUTH with the password only
    std::string password;  // empty: no AUTH
};

// Parses a redis:// URL (IPv6 hosts in brackets). Throws std::invalid_argument naming the URL and
// what is wrong with it: this is start-up configuration.
RedisEndpoint ParseRedisUrl(const std::string& url);

// Records stored in Redis are netstrings ("<len>:<bytes>,") one after the other: binary-safe, and a
// prefix of whole fields can be compared in Lua with string.sub (the scripts check record owners so).
std::string EncodeRecord(std::initializer_list<std::string_view> fields);
// The fields of a record, or false when `record` is not a sequence of netstrings.
bool DecodeRecord(std::string_view record, std::vector<std::string_view>& fields);

// Lua helpers the adapters' scripts start with. Time is always Redis server time (TIME inside the
// script), never the client's clock, so gateways with skewed clocks agree on what has expired.
//   now_ms()                     server time in ms since the epoch
//   ms(x)                        a number of ms as an integer string
//   settle_expiring(h, e, now)   drops the fields of hash h whose expiry (score in sorted set e) has
//                                passed and makes both keys expire with the last live one; returns that
//                                expiry as a string, or nil (both keys deleted) when none is left
inline constexpr std::string_view kRedisLuaPrelude = R"lua(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function ms(x)
  return string.format('%.0f', x)
end
local function settle_expiring(h, e, now)
  local dead = redis.call('ZRANGEBYSCORE', e, '-inf', ms(now))
  for i = 1, #dead, 500 do
    local chunk = {unpack(dead, i, math.min(i + 499, #dead))}
    redis.call('HDEL', h, unpack(chunk))
    redis.call('ZREM', e, unpack(chunk))
  end
  local last = redis.call('ZRANGE', e, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', h, e)
    return nil
  end
  redis.call('PEXPIREAT', h, last[2])
  redis.call('PEXPIREAT', e, last[2])
  return last[2]
end
)lua";

// One reply, copied out of hiredis. Error replies never reach callers: they become an Error.
struct RedisReply {
    enum class Type { kNil, kInteger, kString, kStatus, kArray };
    Type type = Type::kNil;
    int64_t integer = 0;
    std::string str;                   // kString and kStatus
    std::vector<RedisReply> elements;  // kArray
};

// One command: either plain argv, or a call of one of the client's scripts.
struct RedisCommand {
    std::vector<std::string> argv;
    int script = -1;  // index into the client's scripts, or -1

    static RedisCommand Plain(std::vector<std::string> argv) { return RedisCommand{std::move(argv), -1}; }
    // EVALSHA of scripts[index] with these KEYS and ARGV.
    static RedisCommand Script(int index, const std::vector<std::string>& keys, const std::vector<std::string>& args);
};

// A pipelining client over one connection, for adapters whose port is asynchronous. A worker thread
// owns the connection; requests are queued and everything queued is written at once and then read
// back (one round trip for many concurrent requests). Requests run in submission order. When the
// connection fails, the worker reconnects by itself (immediately once, then with back-off up to 1 s);
// meanwhile requests fail fast. Scripts are loaded with SCRIPT LOAD on every connect and called with
// EVALSHA (EVAL when the server lost them). Thread-safe.
class RedisClient {
public:
    using RepliesCallback = std::function<void(Result<std::vector<RedisReply>>)>;

    // `unavailable_reason` is the Error::reason of connection failures ("presence_unavailable").
    // Throws std::invalid_argument for a bad options.url. Does not connect yet.
    RedisClient(RedisOptions options, std::string unavailable_reason, std::vector<std::string> scripts = {});
    ~RedisClient();  // Stop()
    RedisClient(const RedisClient&) = delete;
    RedisClient& operator=(const RedisClient&) = delete;

    // Starts the worker, which connects at once. Call once.
    void Start();
    // Fails what is queued and not yet sent with kUnavailable, waits for the batch in flight (bounded by
    // the command timeout), and joins the worker. Later requests fail inline. Idempotent; must not be
    // called from a completion callback.
    void Stop();

    // Runs `commands` in order, pipelined with whatever else is queued. `done` runs exactly once, on the
    // worker thread (inline after Stop), with one reply per command; or with an Error: kUnavailable
    // (reason as given to the constructor, message naming the URL) when Redis could not be reached or
    // did not answer within the command timeout, then it is unknown which commands ran; kInternal
    // "redis_error" when Redis answered a command with an error (the other commands still ran).
    // A null `done` is allowed (fire and forget).
    void Submit(std::vector<RedisCommand> commands, RepliesCallback done);

    const RedisOptions& options() const { return options_; }

    struct Connection;  // the worker's hiredis state (redis_client.cpp)

private:
    struct Request {
        std::vector<RedisCommand> commands;
        RepliesCallback done;
    };
    void Run();
    bool Connect();                     // replaces the connection; on failure schedules the next attempt
    void Lost(const std::string& why);  // drops a failed connection
    void Execute(std::vector<Request>& batch);
    void FailAll(std::vector<Request>& batch, const Error& error);
    Error Unavailable(const std::string& what) const;

    const RedisOptions options_;
    const RedisEndpoint endpoint_;
    const std::string display_url_;  // options_.url without credentials, for messages
    const std::string unavailable_reason_;
    const std::vector<std::string> scripts_;
    std::unique_ptr<Connection> conn_;  // touched by the worker only

    std::mutex stop_mu_;  // serializes Stop()
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Request> queue_;
    bool started_ = false;
    bool stopping_ = false;
    std::thread worker_;
};

}  // namespace flare
