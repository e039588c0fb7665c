// EtcdServiceRegistry (see etcd_registry.hpp): a small blocking HTTP/1.1 client for the etcd JSON gateway
// and the worker thread that runs calls, keepalives and re-grants. Beast's tcp_stream applies its
// expiry only to asynchronous operations, so each request is an async operation on a private
// io_context that the worker runs until that operation completes: blocking for the worker, bounded by
// the deadline. This is the only translation unit of the adapter that includes Beast and Asio.
#include "adapters/etcd/etcd_registry.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>

#include "adapters/memory/static_service_registry.hpp"

namespace flare {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace json = boost::json;
using tcp = net::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using Deadline = SteadyClock::time_point;

constexpr char kBase64Chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Base64Encode(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
        out += kBase64Chars[(n >> 18) & 63];
        out += kBase64Chars[(n >> 12) & 63];
        out += kBase64Chars[(n >> 6) & 63];
        out += kBase64Chars[n & 63];
    }
    if (i + 1 == in.size()) {
        uint32_t n = uint8_t(in[i]) << 16;
        out += kBase64Chars[(n >> 18) & 63];
        out += kBase64Chars[(n >> 12) & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
        out += kBase64Chars[(n >> 18) & 63];
        out += kBase64Chars[(n >> 12) & 63];
        out += kBase64Chars[(n >> 6) & 63];
        out += '=';
    }
    return out;
}

std::optional<std::string> Base64Decode(std::string_view in) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') {
            return c - 'A';
        }
        if (c >= 'a' && c <= 'z') {
            return c - 'a' + 26;
        }
        if (c >= '0' && c <= '9') {
            return c - '0' + 52;
        }
        if (c == '+') {
            return 62;
        }
        if (c == '/') {
            return 63;
        }
        return -1;
    };
    while (!in.empty() && in.back() == '=') {
        in.remove_suffix(1);
    }
    std::string out;
    out.reserve(in.size() * 3 / 4);
    uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        int v = value(c);
        if (v < 0) {
            return std::nullopt;
        }
        acc = (acc << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += char((acc >> bits) & 0xff);
        }
    }
    return out;
}

// The first key after every key that starts with `prefix` (etcd's range_end for a prefix scan).
std::string PrefixEnd(std::string prefix) {
    while (!prefix.empty()) {
        if (uint8_t(prefix.back()) < 0xff) {
            prefix.back() = char(uint8_t(prefix.back()) + 1);
            return prefix;
        }
        prefix.pop_back();
    }
    return std::string(1, '\0');  // every key
}

// etcd's int64 fields are JSON strings; accept numbers too.
std::optional<int64_t> JsonInt(const json::object& obj, std::string_view field) {
    const json::value* v = obj.if_contains(field);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (v->is_int64()) {
        return v->as_int64();
    }
    if (v->is_uint64()) {
        return static_cast<int64_t>(v->as_uint64());
    }
    if (const json::string* s = v->if_string()) {
        int64_t out = 0;
        auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), out);
        if (ec == std::errc{} && end == s->data() + s->size()) {
            return out;
        }
    }
    return std::nullopt;
}

std::string JsonString(const json::object& obj, std::string_view field) {
    const json::value* v = obj.if_contains(field);
    if (v == nullptr) {
        return {};
    }
    if (const json::string* s = v->if_string()) {
        return std::string(*s);
    }
    return {};
}

// gRPC status codes line up with Errc where Errc has them.
Errc ErrcFromGrpc(int64_t code) {
    switch (code) {
        case 1:
            return Errc::kCancelled;
        case 3:
            return Errc::kInvalidArgument;
        case 4:
            return Errc::kDeadlineExceeded;
        case 5:
            return Errc::kNotFound;
        case 6:
            return Errc::kAlreadyExists;
        case 7:
            return Errc::kPermissionDenied;
        case 8:
            return Errc::kResourceExhausted;
        case 9:
            return Errc::kFailedPrecondition;
        case 14:
            return Errc::kUnavailable;
        case 16:
            return Errc::kUnauthenticated;
        default:
            return Errc::kInternal;
    }
}

std::string MsText(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

struct HttpReply {
    unsigned status = 0;
    std::string body;
};

// A blocking HTTP/1.1 client for the etcd gateway over one kept-alive connection, used by one thread.
class EtcdHttpClient {
public:
    EtcdHttpClient(std::vector<EtcdEndpoint> endpoints, std::chrono::milliseconds timeout)
        : endpoints_(std::move(endpoints)), timeout_(timeout) {}

    // POSTs `body` to `target` on the endpoints in turn, starting with the one that last answered,
    // until one answers or `deadline` passes. Returns the answer's JSON object (the "result" of a
    // streamed answer). An endpoint that cannot be reached or says it is unavailable (gRPC code 14)
    // makes the next one be tried; other etcd errors are returned with their code mapped to Errc.
    Result<json::object> Call(std::string_view target, const std::string& body, Deadline deadline) {
        std::string tried;
        bool timed_out = false;
        const size_t first = preferred_;
        for (size_t i = 0; i < endpoints_.size(); ++i) {
            size_t index = (first + i) % endpoints_.size();
            if (SteadyClock::now() >= deadline) {
                timed_out = true;
                break;
            }
            Result<json::object> answer = [&]() -> Result<json::object> {
                auto reply = PostOnce(index, target, body, deadline);
                if (!reply) {
                    return reply.error();
                }
                return ParseReply(target, *reply);
            }();
            if (answer.ok() ||
                (answer.error().code != Errc::kUnavailable && answer.error().code != Errc::kDeadlineExceeded)) {
                preferred_ = index;
                return answer;
            }
            timed_out = timed_out || answer.error().code == Errc::kDeadlineExceeded;
            if (!tried.empty()) {
                tried += "; ";
            }
            tried += endpoints_[index].url + ": " + answer.error().message;
            Close();
            if (index == preferred_) {
                preferred_ = (index + 1) % endpoints_.size();  // the next call starts elsewhere
            }
        }
        if (timed_out) {
            return MakeError(Errc::kDeadlineExceeded, "etcd_timeout",
                             "etcd did not answer " + std::string(target) + " within " + MsText(timeout_) + " (" +
                                 (tried.empty() ? "no endpoint tried" : tried) + ")");
        }
        return MakeError(Errc::kUnavailable, "etcd_unavailable",
                         "etcd is unreachable at " + EndpointList() + " (" + tried +
                             "); check that etcd runs and that the endpoints option is right");
    }

private:
    std::string EndpointList() const {
        std::string out;
        for (const auto& ep : endpoints_) {
            out += (out.empty() ? "" : ", ") + ep.url;
        }
        return out;
    }

    // Runs the io_context until the operation started by `initiate` completes; returns its error code.
    template <typename Initiate>
    beast::error_code Run(Initiate&& initiate) {
        std::optional<beast::error_code> result;
        initiate([&result](beast::error_code ec, auto&&...) { result = ec; });
        ioc_.restart();
        while (!result && ioc_.run_one() > 0) {
        }
        return result.value_or(net::error::operation_aborted);
    }

    void Close() {
        if (stream_) {
            beast::error_code ignored;
            stream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
            stream_->close();
            stream_.reset();
        }
        connected_ = kNone;
        buffer_.consume(buffer_.size());
    }

    Status Connect(size_t index, Deadline deadline) {
        const EtcdEndpoint& ep = endpoints_[index];
        uint16_t port = static_cast<uint16_t>(std::stoul(ep.port));
        std::vector<tcp::endpoint> targets;
        beast::error_code ec;
        auto address = net::ip::make_address(ep.host, ec);
        if (!ec) {
            targets.emplace_back(address, port);
        } else {
            // getaddrinfo cannot be interrupted: a cancelled lookup completes when the system
            // resolver returns.
            std::optional<beast::error_code> resolved;
            bool expired = false;
            tcp::resolver::results_type results;
            timer_.expires_at(deadline);
            timer_.async_wait([this, &expired](beast::error_code wait_ec) {
                if (!wait_ec) {
                    expired = true;
                    resolver_.cancel();
                }
            });
            resolver_.async_resolve(ep.host, ep.port, [&](beast::error_code resolve_ec, tcp::resolver::results_type r) {
                resolved = resolve_ec;
                results = std::move(r);
                timer_.cancel();
            });
            ioc_.restart();
            while (!resolved && ioc_.run_one() > 0) {
            }
            ioc_.poll();  // the cancelled timer's handler, before its captures go away
            if (!resolved || *resolved) {
                if (expired) {
                    return MakeError(Errc::kDeadlineExceeded, "etcd_timeout", "resolving " + ep.host + " timed out");
                }
                return MakeError(Errc::kUnavailable, "etcd_unavailable",
                                 "cannot resolve " + ep.host + ": " + (resolved ? resolved->message() : "aborted"));
            }
            for (const auto& entry : results) {
                targets.push_back(entry.endpoint());
            }
        }
        stream_.emplace(ioc_);
        stream_->expires_at(deadline);
        ec = Run([&](auto handler) { stream_->async_connect(targets, std::move(handler)); });
        if (ec) {
            bool timeout = ec == beast::error::timeout;
            Close();
            if (timeout) {
                return MakeError(Errc::kDeadlineExceeded, "etcd_timeout", "connecting timed out");
            }
            return MakeError(Errc::kUnavailable, "etcd_unavailable", "cannot connect: " + ec.message());
        }
        beast::error_code ignored;
        stream_->socket().set_option(tcp::no_delay(true), ignored);
        connected_ = index;
        return Status{};
    }

    // One request on endpoint `index`, reusing the open connection when it goes there. A kept-alive
    // connection the server has closed meanwhile is replaced once.
    Result<HttpReply> PostOnce(size_t index, std::string_view target, const std::string& body, Deadline deadline) {
        const EtcdEndpoint& ep = endpoints_[index];
        for (int attempt = 0;; ++attempt) {
            bool reused = stream_.has_value() && connected_ == index;
            if (!reused) {
                Close();
                if (auto connected = Connect(index, deadline); !connected) {
                    return connected.error();
                }
            }
            http::request<http::string_body> req{http::verb::post, std::string(target), 11};
            req.set(http::field::host,
                    ep.host.find(':') != std::string::npos ? "[" + ep.host + "]:" + ep.port : ep.host + ":" + ep.port);
            req.set(http::field::content_type, "application/json");
            req.body() = body;
            req.prepare_payload();
            http::response<http::string_body> res;
            stream_->expires_at(deadline);
            beast::error_code ec = Run([&](auto handler) { http::async_write(*stream_, req, std::move(handler)); });
            if (!ec) {
                stream_->expires_at(deadline);
                ec = Run([&](auto handler) { http::async_read(*stream_, buffer_, res, std::move(handler)); });
            }
            if (ec) {
                Close();
                if (ec == beast::error::timeout) {
                    return MakeError(Errc::kDeadlineExceeded, "etcd_timeout", "no answer in time");
                }
                if (reused && attempt == 0 && SteadyClock::now() < deadline) {
                    continue;
                }
                return MakeError(Errc::kUnavailable, "etcd_unavailable", ec.message());
            }
            stream_->expires_never();
            if (!res.keep_alive()) {
                Close();
            }
            return HttpReply{res.result_int(), std::move(res.body())};
        }
    }

    static Result<json::object> ParseReply(std::string_view target, const HttpReply& reply) {
        // A streamed answer (lease/keepalive) is one JSON object per line; we send one request.
        std::string_view text = reply.body;
        size_t newline = text.find('\n');
        if (newline != std::string_view::npos && text.find_first_not_of(" \r\n\t", newline) != std::string_view::npos) {
            text = text.substr(0, newline);
        }
        beast::error_code ec;
        json::value parsed = json::parse(text, ec);
        json::object* obj = ec ? nullptr : parsed.if_object();
        if (obj == nullptr) {
            Errc code = reply.status == 503 ? Errc::kUnavailable : Errc::kInternal;
            return MakeError(code, "etcd_error",
                             "etcd answered " + std::string(target) + " with HTTP " + std::to_string(reply.status) +
                                 " and a body that is not a JSON object");
        }
        const json::object* error = nullptr;
        if (reply.status != 200) {
            error = obj;
        } else if (const json::value* streamed = obj->if_contains("error"); streamed && streamed->is_object()) {
            error = &streamed->get_object();
        }
        if (error != nullptr) {
            int64_t grpc = JsonInt(*error, "code").value_or(JsonInt(*error, "grpc_code").value_or(2));
            std::string message = JsonString(*error, "message");
            return MakeError(ErrcFromGrpc(grpc), "etcd_error",
                             "etcd refused " + std::string(target) + ": " + message + " (HTTP " +
                                 std::to_string(reply.status) + ", code " + std::to_string(grpc) + ")");
        }
        if (const json::value* result = obj->if_contains("result"); result && result->is_object()) {
            return result->get_object();
        }
        return std::move(*obj);
    }

    static constexpr size_t kNone = static_cast<size_t>(-1);

    std::vector<EtcdEndpoint> endpoints_;
    std::chrono::milliseconds timeout_;
    size_t preferred_ = 0;
    // Destroyed in reverse order: the stream, timer and resolver before their io_context.
    net::io_context ioc_{1};
    tcp::resolver resolver_{ioc_};
    net::steady_timer timer_{ioc_};
    std::optional<beast::tcp_stream> stream_;
    size_t connected_ = kNone;
    beast::flat_buffer buffer_;
};

Error Stopped() { return MakeError(Errc::kUnavailable, "registry_stopped", "the etcd service registry is stopped"); }

}  // namespace

Result<std::vector<EtcdEndpoint>> ParseEtcdEndpoints(std::string_view endpoints) {
    auto bad = [](std::string message) {
        return MakeError(Errc::kInvalidArgument, "bad_etcd_endpoints", std::move(message));
    };
    std::vector<EtcdEndpoint> out;
    size_t start = 0;
    while (start <= endpoints.size()) {
        size_t comma = endpoints.find(',', start);
        std::string_view entry =
            endpoints.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
        start = comma == std::string_view::npos ? endpoints.size() + 1 : comma + 1;
        while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t')) {
            entry.remove_prefix(1);
        }
        while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t' || entry.back() == '/')) {
            entry.remove_suffix(1);
        }
        if (entry.empty()) {
            continue;
        }
        const std::string quoted = "'" + std::string(entry) + "'";
        constexpr std::string_view kScheme = "http://";
        if (!entry.starts_with(kScheme)) {
            return bad("etcd endpoint " + quoted + " must start with http:// (https is not supported)");
        }
        std::string_view authority = entry.substr(kScheme.size());
        if (authority.find('/') != std::string_view::npos) {
            return bad("etcd endpoint " + quoted + " must be http://host:port without a path");
        }
        if (auto s = ValidateEndpoint(authority); !s) {
            return bad("etcd endpoint " + quoted + ": " + s.error().message);
        }
        EtcdEndpoint ep;
        ep.url = std::string(entry);
        size_t colon = authority.rfind(':');
        std::string_view host = authority.substr(0, colon);
        if (host.starts_with('[')) {
            host = host.substr(1, host.size() - 2);
        }
        ep.host = std::string(host);
        ep.port = std::string(authority.substr(colon + 1));
        out.push_back(std::move(ep));
    }
    if (out.empty()) {
        return bad("no etcd endpoint given; write a comma list of http://host:port");
    }
    return out;
}

// The worker thread, its queue and the leases it keeps alive. Everything below `thread-only` is
// touched by the worker thread alone.
class EtcdServiceRegistry::Worker {
public:
    struct Job {
        Deadline deadline;
        std::function<void(Worker&, Deadline)> run;  // completes the call
        std::function<void(Error)> fail;             // completes it without running it
    };

    Worker(EtcdRegistryOptions options, std::vector<EtcdEndpoint> endpoints)
        : options_(std::move(options)), http_(std::move(endpoints), options_.timeout) {
        while (!options_.key_prefix.empty() && options_.key_prefix.back() == '/') {
            options_.key_prefix.pop_back();
        }
        thread_ = std::thread([this] { Loop(); });
    }

    ~Worker() { Shutdown(false); }

    std::chrono::milliseconds timeout() const { return options_.timeout; }

    // Queues the job, or fails it inline once shutdown has begun.
    void Submit(Job job) {
        {
            std::lock_guard lock(mu_);
            if (state_ == State::kRunning) {
                queue_.push_back(std::move(job));
                cv_.notify_one();
                return;
            }
        }
        job.fail(Stopped());
    }

    // graceful: run what is queued, revoke the leases. Otherwise fail what is queued, revoke nothing.
    void Shutdown(bool graceful) {
        std::lock_guard stop_lock(stop_mu_);
        if (!thread_.joinable()) {
            return;
        }
        {
            std::lock_guard lock(mu_);
            state_ = graceful ? State::kDraining : State::kAbandoning;
        }
        cv_.notify_one();
        thread_.join();
    }

    std::string ServiceDir(const std::string& service) const {
        return options_.key_prefix + "/services/" + service + "/";
    }

    Status DoRegister(const ServiceInstance& instance, std::chrono::seconds ttl, Deadline deadline) {
        const std::string key = ServiceDir(instance.service) + instance.instance_id;
        Lease lease{instance, ttl, 0, std::chrono::seconds(0), {}};
        if (auto s = GrantAndPut(key, lease, deadline); !s) {
            return s;
        }
        auto it = leases_.find(key);
        if (it == leases_.end()) {
            leases_.emplace(key, std::move(lease));
            return Status{};
        }
        int64_t old_id = it->second.id;
        it->second = std::move(lease);
        // The key is on the new lease now, so revoking the old one deletes nothing; if this fails the
        // old lease simply expires.
        if (SteadyClock::now() < deadline) {
            if (auto r = Revoke(old_id, deadline); !r && r.error().code != Errc::kNotFound) {
                spdlog::debug("etcd registry: revoking the replaced lease of {} failed: {}", key, r.error().message);
            }
        }
        return Status{};
    }

    Status DoDeregister(const std::string& service, const std::string& instance_id, Deadline deadline) {
        const std::string key = ServiceDir(service) + instance_id;
        auto it = leases_.find(key);
        if (it != leases_.end()) {
            int64_t id = it->second.id;
            leases_.erase(it);
            auto revoked = Revoke(id, deadline);
            if (revoked.ok()) {
                return Status{};  // revoking deleted the key
            }
            if (revoked.error().code != Errc::kNotFound) {
                return revoked;
            }
        }
        json::object req{{"key", Base64Encode(key)}};
        auto deleted = http_.Call("/v3/kv/deleterange", json::serialize(req), deadline);
        if (!deleted) {
            return deleted.error();
        }
        return Status{};
    }

    Result<std::vector<ServiceInstance>> DoResolve(const std::string& service, Deadline deadline) {
        const std::string dir = ServiceDir(service);
        json::object req{{"key", Base64Encode(dir)}, {"range_end", Base64Encode(PrefixEnd(dir))}};
        auto answer = http_.Call("/v3/kv/range", json::serialize(req), deadline);
        if (!answer) {
            return answer.error();
        }
        std::vector<ServiceInstance> out;
        const json::value* kvs = answer->if_contains("kvs");
        if (kvs == nullptr || !kvs->is_array()) {
            return out;  // no keys: the gateway leaves the field out
        }
        for (const json::value& kv : kvs->get_array()) {
            const json::object* kv_obj = kv.if_object();
            if (kv_obj == nullptr) {
                continue;
            }
            auto key = Base64Decode(JsonString(*kv_obj, "key"));
            auto value = Base64Decode(JsonString(*kv_obj, "value"));
            if (!key || !value || key->size() <= dir.size()) {
                spdlog::warn("etcd registry: skipping an entry under {} with an undecodable key or value", dir);
                continue;
            }
            beast::error_code ec;
            json::value parsed = json::parse(*value, ec);
            const json::object* fields = ec ? nullptr : parsed.if_object();
            if (fields == nullptr) {
                spdlog::warn("etcd registry: skipping {}: its value is not a JSON object", *key);
                continue;
            }
            ServiceInstance instance;
            instance.service = service;
            instance.instance_id = key->substr(dir.size());
            instance.endpoint = JsonString(*fields, "endpoint");
            instance.region = JsonString(*fields, "region");
            if (instance.endpoint.empty()) {
                spdlog::warn("etcd registry: skipping {}: its value has no endpoint", *key);
                continue;
            }
            out.push_back(std::move(instance));
        }
        std::sort(out.begin(), out.end(),
                  [](const ServiceInstance& a, const ServiceInstance& b) { return a.instance_id < b.instance_id; });
        return out;
    }

private:
    enum class State { kRunning, kDraining, kAbandoning };

    struct Lease {
        ServiceInstance instance;
        std::chrono::seconds requested_ttl;
        int64_t id = 0;
        std::chrono::seconds granted_ttl{0};
        Deadline next_keepalive;
    };

    static std::chrono::milliseconds KeepaliveInterval(std::chrono::seconds ttl) {
        return std::max(std::chrono::milliseconds(100), std::chrono::milliseconds(ttl) / 3);
    }

    // Grants a lease for `lease` and puts its key on it; fills in id, granted TTL and the next keepalive.
    Status GrantAndPut(const std::string& key, Lease& lease, Deadline deadline) {
        json::object grant_req{{"TTL", std::to_string(lease.requested_ttl.count())}};
        auto granted = http_.Call("/v3/lease/grant", json::serialize(grant_req), deadline);
        if (!granted) {
            return granted.error();
        }
        auto id = JsonInt(*granted, "ID");
        auto ttl = JsonInt(*granted, "TTL");
        if (std::string why = JsonString(*granted, "error"); !why.empty() || !id || !ttl || *ttl <= 0) {
            return MakeError(Errc::kInternal, "etcd_error",
                             "etcd did not grant a lease: " + (why.empty() ? json::serialize(*granted) : why));
        }
        json::object value{{"service", lease.instance.service},
                           {"instance_id", lease.instance.instance_id},
                           {"endpoint", lease.instance.endpoint},
                           {"region", lease.instance.region}};
        json::object put_req{{"key", Base64Encode(key)},
                             {"value", Base64Encode(json::serialize(value))},
                             {"lease", std::to_string(*id)}};
        auto put = http_.Call("/v3/kv/put", json::serialize(put_req), deadline);
        if (!put) {
            if (SteadyClock::now() < deadline) {
                (void)Revoke(*id, deadline);
            }
            return put.error();
        }
        lease.id = *id;
        lease.granted_ttl = std::chrono::seconds(*ttl);
        lease.next_keepalive = SteadyClock::now() + KeepaliveInterval(lease.granted_ttl);
        return Status{};
    }

    Status Revoke(int64_t id, Deadline deadline) {
        json::object req{{"ID", std::to_string(id)}};
        auto answer = http_.Call("/v3/lease/revoke", json::serialize(req), deadline);
        if (!answer) {
            return answer.error();
        }
        return Status{};
    }

    // Sends the keepalives that are due. A lease etcd no longer knows is granted again and its key put
    // again; a keepalive that fails is retried after half an interval.
    // The whole round shares one deadline, and a destruction that begins meanwhile ends it.
    void RunDueKeepalives() {
        const Deadline deadline = SteadyClock::now() + options_.timeout;
        for (auto& [key, lease] : leases_) {
            auto now = SteadyClock::now();
            if (lease.next_keepalive > now) {
                continue;
            }
            if (Abandoning()) {
                return;
            }
            json::object req{{"ID", std::to_string(lease.id)}};
            auto answer = http_.Call("/v3/lease/keepalive", json::serialize(req), deadline);
            auto interval = KeepaliveInterval(lease.granted_ttl);
            if (answer) {
                int64_t ttl = JsonInt(*answer, "TTL").value_or(0);
                if (ttl > 0) {
                    lease.granted_ttl = std::chrono::seconds(ttl);
                    lease.next_keepalive = SteadyClock::now() + KeepaliveInterval(lease.granted_ttl);
                    keepalive_failure_logged_ = false;
                    continue;
                }
                auto s = GrantAndPut(key, lease, deadline);
                if (s) {
                    spdlog::warn(
                        "etcd registry: the lease of {} was gone (etcd lost it or keepalives were late); "
                        "registered it again",
                        key);
                    continue;
                }
                answer = s.error();
            }
            if (!keepalive_failure_logged_) {
                spdlog::warn("etcd registry: keeping {} alive failed: {}; retrying", key, answer.error().message);
                keepalive_failure_logged_ = true;
            }
            lease.next_keepalive = SteadyClock::now() + interval / 2;
        }
    }

    void RevokeAll() {
        Deadline deadline = SteadyClock::now() + options_.timeout;
        for (const auto& [key, lease] : leases_) {
            if (SteadyClock::now() >= deadline) {
                spdlog::warn("etcd registry: stop ran out of time; {} expires within its TTL", key);
                continue;
            }
            if (auto s = Revoke(lease.id, deadline); !s && s.error().code != Errc::kNotFound) {
                spdlog::warn("etcd registry: revoking {} at stop failed ({}); it expires within its TTL", key,
                             s.error().message);
            }
        }
        leases_.clear();
    }

    bool Abandoning() {
        std::lock_guard lock(mu_);
        return state_ == State::kAbandoning;
    }

    std::optional<Deadline> NextKeepalive() const {
        std::optional<Deadline> next;
        for (const auto& [key, lease] : leases_) {
            if (!next || lease.next_keepalive < *next) {
                next = lease.next_keepalive;
            }
        }
        return next;
    }

    void Loop() {
        while (true) {
            std::optional<Job> job;
            {
                std::unique_lock lock(mu_);
                auto ready = [&] { return !queue_.empty() || state_ != State::kRunning; };
                if (auto next = NextKeepalive()) {
                    cv_.wait_until(lock, *next, ready);
                } else {
                    cv_.wait(lock, ready);
                }
                if (state_ == State::kAbandoning) {
                    break;
                }
                if (!queue_.empty()) {
                    job.emplace(std::move(queue_.front()));
                    queue_.pop_front();
                } else if (state_ == State::kDraining) {
                    break;
                }
            }
            RunDueKeepalives();
            if (!job) {
                continue;
            }
            if (SteadyClock::now() >= job->deadline) {
                job->fail(MakeError(
                    Errc::kDeadlineExceeded, "etcd_timeout",
                    "the call waited in the registry's queue for longer than its " + MsText(options_.timeout)));
            } else {
                job->run(*this, job->deadline);
            }
        }
        std::deque<Job> left;
        bool graceful = false;
        {
            std::lock_guard lock(mu_);
            left.swap(queue_);
            graceful = state_ == State::kDraining;
        }
        for (auto& job : left) {
            job.fail(Stopped());
        }
        if (graceful) {
            RevokeAll();
        }
        leases_.clear();
    }

    EtcdRegistryOptions options_;
    std::mutex stop_mu_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Job> queue_;
    State state_ = State::kRunning;
    // thread-only:
    EtcdHttpClient http_;
    std::map<std::string, Lease> leases_;
    bool keepalive_failure_logged_ = false;
    std::thread thread_;
};

namespace {

// Runs `fn` and passes its result to `done`, turning an escaped exception into kInternal so that the
// callback runs exactly once and the worker survives.
template <typename T, typename Fn>
void Complete(const std::function<void(T)>& done, Fn&& fn) {
    std::optional<T> result;
    try {
        result.emplace(fn());
    } catch (const std::exception& e) {
        result.emplace(MakeError(Errc::kInternal, "etcd_error", std::string("etcd registry: ") + e.what()));
    }
    done(std::move(*result));
}

}  // namespace

EtcdServiceRegistry::EtcdServiceRegistry(EtcdRegistryOptions options) {
    auto endpoints = ParseEtcdEndpoints(options.endpoints);
    if (!endpoints) {
        throw std::invalid_argument(endpoints.error().message);
    }
    if (options.timeout.count() <= 0) {
        throw std::invalid_argument("etcd registry timeout must be positive, got " + MsText(options.timeout));
    }
    worker_ = std::make_unique<Worker>(std::move(options), std::move(*endpoints));
}

EtcdServiceRegistry::~EtcdServiceRegistry() { worker_->Shutdown(false); }

void EtcdServiceRegistry::Stop() { worker_->Shutdown(true); }

void EtcdServiceRegistry::Register(ServiceInstance instance, std::chrono::seconds ttl, StatusCallback done) {
    if (auto s = ValidateServiceInstance(instance, ttl); !s) {
        done(std::move(s));
        return;
    }
    Worker::Job job;
    job.deadline = SteadyClock::now() + worker_->timeout();
    job.run = [instance = std::move(instance), ttl, done](Worker& w, Deadline deadline) {
        Complete<Status>(done, [&] { return w.DoRegister(instance, ttl, deadline); });
    };
    job.fail = [done](Error e) { done(std::move(e)); };
    worker_->Submit(std::move(job));
}

void EtcdServiceRegistry::Deregister(std::string service, std::string instance_id, StatusCallback done) {
    if (auto s = ValidateRegistryName("service", service); !s) {
        done(std::move(s));
        return;
    }
    if (auto s = ValidateRegistryName("instance_id", instance_id); !s) {
        done(std::move(s));
        return;
    }
    Worker::Job job;
    job.deadline = SteadyClock::now() + worker_->timeout();
    job.run = [service = std::move(service), instance_id = std::move(instance_id), done](Worker& w, Deadline deadline) {
        Complete<Status>(done, [&] { return w.DoDeregister(service, instance_id, deadline); });
    };
    job.fail = [done](Error e) { done(std::move(e)); };
    worker_->Submit(std::move(job));
}

void EtcdServiceRegistry::Resolve(std::string service, Callback<std::vector<ServiceInstance>> done) {
    if (auto s = ValidateRegistryName("service", service); !s) {
        done(s.error());
        return;
    }
    Worker::Job job;
    job.deadline = SteadyClock::now() + worker_->timeout();
    job.run = [service = std::move(service), done](Worker& w, Deadline deadline) {
        Complete<Result<std::vector<ServiceInstance>>>(done, [&] { return w.DoResolve(service, deadline); });
    };
    job.fail = [done](Error e) { done(std::move(e)); };
    worker_->Submit(std::move(job));
}

}  // namespace flare
