#include "adapters/redis/redis_client.hpp"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <optional>
#include <stdexcept>

namespace flare {

namespace {

constexpr size_t kMaxPipeline = 1024;  // commands written before their replies are read
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{1000};

[[noreturn]] void BadUrl(const std::string& url, const std::string& what) {
    throw std::invalid_argument("bad Redis URL '" + url + "': " + what +
                                " (expected redis://[[user]:password@]host[:port][/db], e.g. "
                                "redis://127.0.0.1:26379/0)");
}

std::optional<int> ParseInt(std::string_view s, int max) {
    int v = 0;
    if (s.empty() || s.size() > 9) {
        return std::nullopt;
    }
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size() || v < 0 || v > max) {
        return std::nullopt;
    }
    return v;
}

std::string PercentDecode(const std::string& url, std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        int v = 0;
        if (i + 2 >= s.size() || std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16).ptr != s.data() + i + 3) {
            BadUrl(url, "bad percent escape in the credentials");
        }
        out += static_cast<char>(v);
        i += 2;
    }
    return out;
}

timeval ToTimeval(std::chrono::milliseconds ms) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
    return tv;
}

RedisReply Convert(const redisReply* r) {
    RedisReply out;
    switch (r->type) {
        case REDIS_REPLY_INTEGER:
            out.type = RedisReply::Type::kInteger;
            out.integer = r->integer;
            break;
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_ERROR:  // only nested ones get here
            out.type = RedisReply::Type::kString;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_STATUS:
            out.type = RedisReply::Type::kStatus;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_ARRAY:
            out.type = RedisReply::Type::kArray;
            out.elements.reserve(r->elements);
            for (size_t i = 0; i < r->elements; ++i) {
                out.elements.push_back(Convert(r->element[i]));
            }
            break;
        default:
            break;
    }
    return out;
}

// Error replies that mean "this server cannot serve now" rather than "this command is wrong".
bool IsUnavailableReply(std::string_view err) {
    for (std::string_view code : {"LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "OOM"}) {
        if (err.starts_with(code)) {
            return true;
        }
    }
    return false;
}

// The server closed the connection (or sent something nobody asked for) while it was idle.
bool PeerGone(int fd) {
    char c;
    ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) {
        return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
    return true;
}

// What went wrong on `ctx`, right after a failed call.
std::string DescribeIo(const redisContext* ctx, std::chrono::milliseconds timeout) {
    if (ctx == nullptr) {
        return "out of memory";
    }
    if (ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return "no answer within " + std::to_string(timeout.count()) + " ms";
    }
    return ctx->errstr;
}

template <typename F>
void Invoke(const F& done, Result<std::vector<RedisReply>> result) {
    if (!done) {
        return;
    }
    try {
        done(std::move(result));
    } catch (const std::exception& e) {
        spdlog::error("redis: a completion callback threw: {}", e.what());
    } catch (...) {
        spdlog::error("redis: a completion callback threw");
    }
}

}  // namespace

RedisEndpoint ParseRedisUrl(const std::string& url) {
    constexpr std::string_view kScheme = "redis://";
    std::string_view s = url;
    if (s.starts_with("rediss://")) {
        BadUrl(url, "TLS (rediss://) is not supported");
    }
    if (!s.starts_with(kScheme)) {
        BadUrl(url, "the scheme must be redis://");
    }
    s.remove_prefix(kScheme.size());
    if (s.find_first_of("?#") != std::string_view::npos) {
        BadUrl(url, "query parameters are not supported");
    }
    RedisEndpoint ep;
    std::string_view authority = s.substr(0, s.find('/'));
    std::string_view path = authority.size() < s.size() ? s.substr(authority.size() + 1) : std::string_view{};

    if (auto at = authority.rfind('@'); at != std::string_view::npos) {
        std::string_view userinfo = authority.substr(0, at);
        authority.remove_prefix(at + 1);
        auto colon = userinfo.find(':');
        ep.username = PercentDecode(url, userinfo.substr(0, colon));
        if (colon != std::string_view::npos) {
            ep.password = PercentDecode(url, userinfo.substr(colon + 1));
        }
        if (ep.password.empty()) {
            BadUrl(url, "credentials without a password");
        }
    }
    std::string_view port;
    if (authority.starts_with('[')) {
        auto close = authority.find(']');
        if (close == std::string_view::npos) {
            BadUrl(url, "unterminated IPv6 address");
        }
        ep.host = authority.substr(1, close - 1);
        std::string_view rest = authority.substr(close + 1);
        if (!rest.empty()) {
            if (rest[0] != ':') {
                BadUrl(url, "unexpected text after the IPv6 address");
            }
            port = rest.substr(1);
            if (port.empty()) {
                BadUrl(url, "empty port");
            }
        }
    } else {
        auto colon = authority.find(':');
        ep.host = authority.substr(0, colon);
        if (colon != std::string_view::npos) {
            port = authority.substr(colon + 1);
            if (port.empty()) {
                BadUrl(url, "empty port");
            }
        }
    }
    if (ep.host.empty()) {
        BadUrl(url, "no host");
    }
    if (!port.empty()) {
        auto p = ParseInt(port, 65535);
        if (!p || *p == 0) {
            BadUrl(url, "the port must be a number from 1 to 65535");
        }
        ep.port = *p;
    }
    if (!path.empty()) {
        auto db = ParseInt(path, 1'000'000);
        if (!db) {
            BadUrl(url, "the path must be a database number");
        }
        ep.db = *db;
    }
    return ep;
}

std::string EncodeRecord(std::initializer_list<std::string_view> fields) {
    std::string out;
    for (std::string_view f : fields) {
        out += std::to_string(f.size());
        out += ':';
        out += f;
        out += ',';
    }
    return out;
}

bool DecodeRecord(std::string_view record, std::vector<std::string_view>& fields) {
    fields.clear();
    while (!record.empty()) {
        auto colon = record.find(':');
        if (colon == std::string_view::npos) {
            return false;
        }
        size_t len = 0;
        auto [end, ec] = std::from_chars(record.data(), record.data() + colon, len);
        if (ec != std::errc{} || end != record.data() + colon || colon == 0) {
            return false;
        }
        record.remove_prefix(colon + 1);
        if (record.size() < len + 1 || record[len] != ',') {
            return false;
        }
        fields.push_back(record.substr(0, len));
        record.remove_prefix(len + 1);
    }
    return true;
}

RedisCommand RedisCommand::Script(int index, const std::vector<std::string>& keys,
                                  const std::vector<std::string>& args) {
    RedisCommand cmd;
    cmd.script = index;
    cmd.argv.reserve(3 + keys.size() + args.size());
    cmd.argv.push_back("EVALSHA");
    cmd.argv.emplace_back();  // the SHA of the connection's SCRIPT LOAD, filled in when sent
    cmd.argv.push_back(std::to_string(keys.size()));
    cmd.argv.insert(cmd.argv.end(), keys.begin(), keys.end());
    cmd.argv.insert(cmd.argv.end(), args.begin(), args.end());
    return cmd;
}

struct RedisClient::Connection {
    redisContext* ctx = nullptr;
    std::vector<std::string> shas;  // of scripts_, as loaded on this connection
    std::string last_error;         // why the last attempt failed or the connection was lost
    std::chrono::steady_clock::time_point next_attempt{};
    std::chrono::milliseconds backoff{0};
    bool reported_down = false;  // a warning was logged for the current outage

    ~Connection() { Close(); }
    void Close() {
        if (ctx != nullptr) {
            redisFree(ctx);
            ctx = nullptr;
        }
    }
};

namespace {

std::string DisplayUrl(const RedisEndpoint& ep) {
    std::string host = ep.host.find(':') != std::string::npos ? "[" + ep.host + "]" : ep.host;
    return "redis://" + host + ":" + std::to_string(ep.port) + (ep.db != 0 ? "/" + std::to_string(ep.db) : "");
}

}  // namespace

RedisClient::RedisClient(RedisOptions options, std::string unavailable_reason, std::vector<std::string> scripts)
    : options_(std::move(options)),
      endpoint_(ParseRedisUrl(options_.url)),
      display_url_(DisplayUrl(endpoint_)),
      unavailable_reason_(std::move(unavailable_reason)),
      scripts_(std::move(scripts)),
      conn_(std::make_unique<Connection>()) {
    if (options_.command_timeout <= std::chrono::milliseconds::zero()) {
        throw std::invalid_argument("Redis command timeout must be positive");
    }
}

RedisClient::~RedisClient() { Stop(); }

void RedisClient::Start() {
    std::lock_guard lock(mu_);
    if (started_ || stopping_) {
        return;
    }
    started_ = true;
    worker_ = std::thread([this] { Run(); });
}

void RedisClient::Stop() {
    std::lock_guard stop_lock(stop_mu_);
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) {
        worker_.join();
    }
    std::deque<Request> rest;
    {
        std::lock_guard lock(mu_);
        rest.swap(queue_);
    }
    const Error stopped = Unavailable("the client was stopped");
    for (auto& r : rest) {
        Invoke(r.done, stopped);
    }
    conn_->Close();
}

void RedisClient::Submit(std::vector<RedisCommand> commands, RepliesCallback done) {
    if (commands.empty()) {
        Invoke(done, std::vector<RedisReply>{});
        return;
    }
    {
        std::lock_guard lock(mu_);
        if (!stopping_) {
            queue_.push_back(Request{std::move(commands), std::move(done)});
            cv_.notify_one();
            return;
        }
    }
    Invoke(done, Unavailable("the client was stopped"));
}

Error RedisClient::Unavailable(const std::string& what) const {
    return MakeError(Errc::kUnavailable, unavailable_reason_, "Redis at " + display_url_ + " is unavailable: " + what);
}

void RedisClient::FailAll(std::vector<Request>& batch, const Error& error) {
    for (auto& r : batch) {
        Invoke(r.done, error);
    }
}

bool RedisClient::Connect() {
    Connection& c = *conn_;
    c.Close();
    const timeval tv = ToTimeval(options_.command_timeout);
    std::string error;
    redisContext* ctx = redisConnectWithTimeout(endpoint_.host.c_str(), endpoint_.port, tv);
    // One synchronous command during the handshake; returns the error text, or "" and the reply.
    auto call = [&](std::vector<std::string> argv, std::string* out) -> std::string {
        std::vector<const char*> ptrs;
        std::vector<size_t> lens;
        for (const auto& a : argv) {
            ptrs.push_back(a.data());
            lens.push_back(a.size());
        }
        auto* r =
            static_cast<redisReply*>(redisCommandArgv(ctx, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
        if (r == nullptr) {
            return DescribeIo(ctx, options_.command_timeout);
        }
        std::string what;
        if (r->type == REDIS_REPLY_ERROR) {
            what = argv[0] + " failed: " + std::string(r->str, r->len);
        } else if (out != nullptr) {
            out->assign(r->str != nullptr ? r->str : "", r->str != nullptr ? r->len : 0);
        }
        freeReplyObject(r);
        return what;
    };
    if (ctx == nullptr) {
        error = "out of memory";
    } else if (ctx->err != 0) {
        error = ctx->errstr;
    } else if (redisSetTimeout(ctx, tv) != REDIS_OK) {
        error = ctx->errstr;
    } else {
        redisEnableKeepAlive(ctx);
        if (!endpoint_.password.empty()) {
            std::vector<std::string> auth{"AUTH"};
            if (!endpoint_.username.empty()) {
                auth.push_back(endpoint_.username);
            }
            auth.push_back(endpoint_.password);
            error = call(std::move(auth), nullptr);
        }
        if (error.empty() && endpoint_.db != 0) {
            error = call({"SELECT", std::to_string(endpoint_.db)}, nullptr);
        }
        c.shas.assign(scripts_.size(), std::string{});
        for (size_t i = 0; error.empty() && i < scripts_.size(); ++i) {
            error = call({"SCRIPT", "LOAD", scripts_[i]}, &c.shas[i]);
        }
    }
    if (error.empty()) {
        c.ctx = ctx;
        c.backoff = std::chrono::milliseconds::zero();
        if (c.reported_down) {
            spdlog::info("redis: connected to {} again", display_url_);
            c.reported_down = false;
        }
        return true;
    }
    if (ctx != nullptr) {
        redisFree(ctx);
    }
    c.last_error = error;
    c.backoff = std::clamp(c.backoff * 2, kFirstBackoff, kMaxBackoff);
    c.next_attempt = std::chrono::steady_clock::now() + c.backoff;
    if (!c.reported_down) {
        spdlog::warn("redis: cannot connect to {}: {}; retrying in the background", display_url_, error);
        c.reported_down = true;
    } else {
        spdlog::debug("redis: cannot connect to {}: {}", display_url_, error);
    }
    return false;
}

void RedisClient::Lost(const std::string& why) {
    Connection& c = *conn_;
    c.Close();
    c.last_error = why;
    c.next_attempt = std::chrono::steady_clock::now();  // try again at once, then back off
    if (!c.reported_down) {
        spdlog::warn("redis: lost the connection to {}: {}", display_url_, why);
        c.reported_down = true;
    }
}

void RedisClient::Run() {
    // hiredis writes with write(2): a peer that went away must give EPIPE, not kill the process.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);

    std::unique_lock lock(mu_);
    for (;;) {
        if (stopping_) {
            break;
        }
        if (conn_->ctx == nullptr && std::chrono::steady_clock::now() >= conn_->next_attempt) {
            lock.unlock();
            Connect();
            lock.lock();
            continue;
        }
        if (queue_.empty()) {
            if (conn_->ctx != nullptr) {
                cv_.wait(lock);
            } else {
                cv_.wait_until(lock, conn_->next_attempt);
            }
            continue;
        }
        std::vector<Request> batch;
        size_t n = 0;
        while (!queue_.empty() && (batch.empty() || n + queue_.front().commands.size() <= kMaxPipeline)) {
            n += queue_.front().commands.size();
            batch.push_back(std::move(queue_.front()));
            queue_.pop_front();
        }
        lock.unlock();
        Execute(batch);
        lock.lock();
    }
    std::deque<Request> rest;
    rest.swap(queue_);
    lock.unlock();
    const Error stopped = Unavailable("the client was stopped");
    for (auto& r : rest) {
        Invoke(r.done, stopped);
    }
}

void RedisClient::Execute(std::vector<Request>& batch) {
    Connection& c = *conn_;
    if (c.ctx != nullptr && PeerGone(c.ctx->fd)) {
        Lost("Redis closed the connection");
        Connect();
    }
    if (c.ctx == nullptr) {
        FailAll(batch, Unavailable(c.last_error));
        return;
    }

    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    auto append = [&](const std::vector<std::string>& argv) {
        ptrs.clear();
        lens.clear();
        for (const auto& a : argv) {
            ptrs.push_back(a.data());
            lens.push_back(a.size());
        }
        return redisAppendCommandArgv(c.ctx, static_cast<int>(argv.size()), ptrs.data(), lens.data()) == REDIS_OK;
    };
    struct Outcome {
        std::vector<RedisReply> replies;
        std::optional<Error> error;
        bool complete = false;  // every reply was read
    };
    std::vector<Outcome> outcomes(batch.size());
    for (auto& req : batch) {
        for (auto& cmd : req.commands) {
            if (cmd.script >= 0) {
                cmd.argv[1] = c.shas[cmd.script];
            }
            if (!append(cmd.argv)) {
                Lost("out of memory");
                FailAll(batch, Unavailable(c.last_error));
                return;
            }
        }
    }

    // Reads the reply of batch[ri].commands[ci]; false on a connection failure.
    std::string io_error;
    std::vector<std::pair<size_t, size_t>> noscript;  // (request, command) to send again with EVAL
    auto read = [&](size_t ri, size_t ci, bool allow_noscript) {
        void* raw = nullptr;
        if (redisGetReply(c.ctx, &raw) != REDIS_OK || raw == nullptr) {
            io_error = DescribeIo(c.ctx, options_.command_timeout);
            return false;
        }
        auto* r = static_cast<redisReply*>(raw);
        Outcome& o = outcomes[ri];
        const RedisCommand& cmd = batch[ri].commands[ci];
        if (r->type == REDIS_REPLY_ERROR) {
            std::string_view err(r->str, r->len);
            if (allow_noscript && cmd.script >= 0 && err.starts_with("NOSCRIPT")) {
                noscript.emplace_back(ri, ci);
            } else if (!o.error) {
                std::string what = cmd.argv[0] + (cmd.script >= 0 ? " of script " + std::to_string(cmd.script) : "") +
                                   " answered: " + std::string(err);
                o.error = IsUnavailableReply(err) ? Unavailable(what)
                                                  : MakeError(Errc::kInternal, "redis_error", "Redis: " + what);
            }
            o.replies.emplace_back();
        } else {
            o.replies.push_back(Convert(r));
        }
        freeReplyObject(r);
        return true;
    };
    bool ok = true;
    for (size_t ri = 0; ok && ri < batch.size(); ++ri) {
        for (size_t ci = 0; ok && ci < batch[ri].commands.size(); ++ci) {
            ok = read(ri, ci, true);
        }
        outcomes[ri].complete = ok;
    }
    if (ok && !noscript.empty()) {
        // The server lost its scripts (SCRIPT FLUSH): send these again with their source.
        for (auto [ri, ci] : noscript) {
            auto& cmd = batch[ri].commands[ci];
            cmd.argv[0] = "EVAL";
            cmd.argv[1] = scripts_[cmd.script];
            ok = ok && append(cmd.argv);
        }
        for (size_t i = 0; ok && i < noscript.size(); ++i) {
            auto [ri, ci] = noscript[i];
            auto before = outcomes[ri].replies.size();
            ok = read(ri, ci, false);
            if (ok) {
                // The retry's reply replaces the NOSCRIPT placeholder.
                outcomes[ri].replies[ci] = std::move(outcomes[ri].replies.back());
                outcomes[ri].replies.resize(before);
            }
        }
        if (!ok) {
            for (auto [ri, ci] : noscript) {
                outcomes[ri].complete = false;
            }
        }
    }
    if (!ok) {
        Lost(io_error.empty() ? "out of memory" : io_error);
    }
    for (size_t ri = 0; ri < batch.size(); ++ri) {
        Outcome& o = outcomes[ri];
        if (!o.complete) {
            Invoke(batch[ri].done, Unavailable(c.last_error));
        } else if (o.error) {
            Invoke(batch[ri].done, *o.error);
        } else {
            Invoke(batch[ri].done, std::move(o.replies));
        }
    }
}

}  // namespace flare
