#include "hooks/hook_engine.hpp"

#include <google/protobuf/util/json_util.h>
#include <sys/socket.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "flare/hooks/v1/hooks.grpc.pb.h"
#include "hooks/hook_config.hpp"
#include "hooks/hook_proto.hpp"
#include "hooks/keyword_matcher.hpp"
#include "hooks/signature.hpp"

namespace flare::hooks {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kPreSendBudget = std::chrono::milliseconds(kPreSendBudgetMs);
constexpr size_t kMaxReasonBytes = 1024;
constexpr size_t kMaxHooksPerTenant = 20;

// The outcome of one call to one hook.
struct CallResult {
    enum class Kind { kOk, kFailed, kTimeout };
    Kind kind = Kind::kOk;
    std::string error;
    PreSendVerdict verdict;  // pre_send

    // A pre_send answer: its verdict, or a failure when it is not a valid one.
    static CallResult FromReply(const hpb::PreSendReply& reply) {
        CallResult out;
        auto v = FromProto(reply);
        if (!v) {
            out.kind = Kind::kFailed;
            out.error = v.error().message;
        } else {
            out.verdict = *v;
        }
        return out;
    }
};

struct Stats {
    std::atomic<uint64_t> calls{0}, rejections{0}, rewrites{0}, failures{0}, timeouts{0}, retries{0}, given_up{0};
    std::atomic<uint64_t> latency_us_sum{0};
};

std::string Escape(const std::string& s) {  // a Prometheus label value
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

}  // namespace

// rate_limit: per (tenant, user) the current window's start and count. Kept across reloads and
// changes of other hooks (a rebuilt list must not forgive everyone).
struct Limiter {
    std::mutex mu;
    std::unordered_map<std::string, std::pair<int64_t, uint32_t>> windows;
};

struct Hook {
    HookSpec spec;
    std::shared_ptr<Stats> stats;
    std::shared_ptr<hpb::HookExtension::Stub> stub;  // grpc
    std::shared_ptr<Limiter> limiter;                // rate_limit
    std::shared_ptr<const KeywordMatcher> keywords;  // keyword_filter
};

using HookList = std::vector<std::shared_ptr<Hook>>;

struct HookEngine::Impl : std::enable_shared_from_this<Impl> {
    Impl(HookEngineOptions o, HookStore* s, const Clock& c) : options(std::move(o)), store(s), clock(c) {}

    HookEngineOptions options;
    HookStore* store;
    const Clock& clock;
    asio::io_context io;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
    std::vector<std::thread> threads;

    mutable std::mutex mu;
    std::vector<HookSpec> file_hooks;
    std::map<std::pair<std::string, std::string>, HookSpec> api_hooks;  // (tenant, name)
    std::map<std::string, std::shared_ptr<Stats>> stats;                // by "tenant/name"
    std::map<std::string, std::shared_ptr<hpb::HookExtension::Stub>> stubs;  // by target
    std::map<std::string, std::shared_ptr<Limiter>> limiters;               // by "tenant/name"
    std::map<std::string, size_t> tenant_queued;  // asynchronous deliveries per hook owner ("" files)
    std::shared_ptr<const HookList> hooks = std::make_shared<HookList>();
    std::atomic<uint32_t> active{0};  // bit per HookPoint
    std::atomic<size_t> queued{0};
    std::atomic<uint64_t> dropped{0};

    std::shared_ptr<const HookList> Snapshot() const {
        std::lock_guard lock(mu);
        return hooks;
    }

    // Rebuilds the list the calls use from the file and API hooks. Under `mu`.
    void RebuildLocked() {
        auto list = std::make_shared<HookList>();
        uint32_t bits = 0;
        auto add = [&](const HookSpec& spec) {
            auto h = std::make_shared<Hook>();
            h->spec = spec;
            auto& st = stats[spec.owner_tenant + "/" + spec.name];
            if (!st) st = std::make_shared<Stats>();
            h->stats = st;
            if (spec.transport == "grpc") {
                auto& stub = stubs[spec.target];
                if (!stub) {
                    // Straight to the target: an http_proxy in the environment is not for hook calls.
                    grpc::ChannelArguments args;
                    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
                    stub = hpb::HookExtension::NewStub(
                        grpc::CreateCustomChannel(spec.target, grpc::InsecureChannelCredentials(), args));
                }
                h->stub = stub;
            }
            if (spec.transport == "keyword_filter") {
                h->keywords = std::make_shared<const KeywordMatcher>(spec.keywords);
            }
            if (spec.transport == "rate_limit") {
                auto& l = limiters[spec.owner_tenant + "/" + spec.name];
                if (!l) l = std::make_shared<Limiter>();
                h->limiter = l;
            }
            for (auto p : spec.points) bits |= 1u << static_cast<int>(p);
            list->push_back(std::move(h));
        };
        for (const auto& s : file_hooks) add(s);
        for (const auto& [key, s] : api_hooks) add(s);
        // Forget what belonged to hooks that are gone (channels, counters, windows).
        std::set<std::string> keys, targets;
        for (const auto& h : *list) {
            keys.insert(h->spec.owner_tenant + "/" + h->spec.name);
            if (h->spec.transport == "grpc") targets.insert(h->spec.target);
        }
        std::erase_if(stats, [&](const auto& e) { return !keys.contains(e.first); });
        std::erase_if(limiters, [&](const auto& e) { return !keys.contains(e.first); });
        std::erase_if(stubs, [&](const auto& e) { return !targets.contains(e.first); });
        std::stable_sort(list->begin(), list->end(), [](const auto& a, const auto& b) {
            return a->spec.priority < b->spec.priority;
        });
        hooks = std::move(list);
        active = bits;
    }

    static bool Matches(const Hook& h, const HookEvent& e) {
        const HookSpec& s = h.spec;
        if (std::find(s.points.begin(), s.points.end(), e.point) == s.points.end()) return false;
        if (!s.owner_tenant.empty() && s.owner_tenant != e.tenant_id) return false;
        if (!s.tenants.empty() && std::find(s.tenants.begin(), s.tenants.end(), e.tenant_id) == s.tenants.end()) {
            return false;
        }
        if (!s.conversation_types.empty() &&
            std::find(s.conversation_types.begin(), s.conversation_types.end(), e.conversation_type) ==
                s.conversation_types.end()) {
            return false;
        }
        const bool has_message = e.point == HookPoint::kPreSend || e.point == HookPoint::kPostSend ||
                                 e.point == HookPoint::kDelivery;
        if (has_message && !s.message_kinds.empty() &&
            std::find(s.message_kinds.begin(), s.message_kinds.end(), e.message.kind) == s.message_kinds.end()) {
            return false;
        }
        return true;
    }

    // ------------------------------------------------------------------------------- transports

    // Idle keep-alive connections to webhook receivers, by "host:port", newest last. Used only on the
    // engine's thread. A connection idle longer than kMaxIdle is closed rather than reused (receivers
    // commonly drop idle connections after 5 s).
    struct IdleConn {
        std::unique_ptr<beast::tcp_stream> stream;
        std::chrono::steady_clock::time_point since;
    };
    std::unordered_map<std::string, std::vector<IdleConn>> idle_conns;
    static constexpr size_t kMaxIdlePerHost = 32;
    static constexpr auto kMaxIdle = std::chrono::seconds(4);

    static bool StillOpen(beast::tcp_stream& s) {
        // An idle HTTP connection has nothing to read; EOF or data means the receiver closed it (or
        // broke the protocol).
        char c;
        const ssize_t n = ::recv(s.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }

    std::unique_ptr<beast::tcp_stream> TakeIdle(const std::string& key) {
        auto it = idle_conns.find(key);
        if (it == idle_conns.end()) return nullptr;
        const auto now = std::chrono::steady_clock::now();
        std::unique_ptr<beast::tcp_stream> out;
        auto& v = it->second;
        while (!v.empty() && !out) {
            IdleConn c = std::move(v.back());
            v.pop_back();
            if (now - c.since < kMaxIdle && StillOpen(*c.stream)) out = std::move(c.stream);
        }
        // Older ones are staler still.
        std::erase_if(v, [&](const IdleConn& c) { return now - c.since >= kMaxIdle; });
        if (v.empty()) idle_conns.erase(it);
        return out;
    }

    void PutIdle(const std::string& key, std::unique_ptr<beast::tcp_stream> stream) {
        stream->expires_never();
        auto& v = idle_conns[key];
        if (v.size() >= kMaxIdlePerHost) v.erase(v.begin());
        v.push_back(IdleConn{std::move(stream), std::chrono::steady_clock::now()});
    }

    // POSTs `body`, signed, and reads the answer, within the hook's timeout. Connections are kept
    // alive and reused; a reused one that turns out closed is replaced once.
    asio::awaitable<CallResult> PostWebhook(std::shared_ptr<Hook> hook, std::string body, bool pre_send) {
        CallResult out;
        auto url = boost::urls::parse_uri(hook->spec.url);
        if (!url) {
            out.kind = CallResult::Kind::kFailed;
            out.error = "bad url";
            co_return out;
        }
        const std::string host(url->host());
        const std::string port = url->has_port() ? std::string(url->port()) : "80";
        const std::string key = host + ":" + port;
        std::string target(url->encoded_path());
        if (target.empty()) target = "/";
        if (url->has_query()) target += "?" + std::string(url->encoded_query());
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(hook->spec.timeout_ms);
        const std::string ts = std::to_string(clock.NowMs() / 1000);
        http::request<http::string_body> req{http::verb::post, target, 11};
        req.set(http::field::host, key);
        req.set(http::field::content_type, "application/json");
        req.set(http::field::user_agent, "flare-hooks/1");
        req.set("X-Flare-Timestamp", ts);
        req.set("X-Flare-Signature", Sign(hook->spec.secret, ts, body));
        req.set("X-Flare-Hook", hook->spec.name);
        req.keep_alive(true);
        req.body() = std::move(body);
        req.prepare_payload();
        auto fail = [&](const beast::error_code& ec, const char* what) {
            out.kind = ec == beast::error::timeout ? CallResult::Kind::kTimeout : CallResult::Kind::kFailed;
            out.error = std::string(what) + ": " + ec.message();
        };
        std::unique_ptr<beast::tcp_stream> stream = TakeIdle(key);
        std::optional<http::response_parser<http::string_body>> parser;
        beast::flat_buffer buffer;
        for (;;) {
            const bool reused = stream != nullptr;
            if (!reused) {
                stream = std::make_unique<beast::tcp_stream>(co_await asio::this_coro::executor);
                tcp::resolver resolver(co_await asio::this_coro::executor);
                auto [rerr, results] = co_await resolver.async_resolve(host, port, kTuple);
                if (rerr) {
                    out.kind = CallResult::Kind::kFailed;
                    out.error = "resolve: " + rerr.message();
                    co_return out;
                }
                stream->expires_at(deadline);
                auto [cerr, ep] = co_await stream->async_connect(results, kTuple);
                if (cerr) {
                    fail(cerr, "connect");
                    co_return out;
                }
            }
            stream->expires_at(deadline);
            auto [werr, wn] = co_await http::async_write(*stream, req, kTuple);
            buffer.clear();
            parser.emplace();
            parser->body_limit(64 * 1024);
            beast::error_code herr = werr;
            if (!werr) {
                auto [rerr, rn] = co_await http::async_read(*stream, buffer, *parser, kTuple);
                herr = rerr;
            }
            if (!herr) break;
            const bool closed_under_us = herr != beast::error::timeout && !parser->got_some();
            if (reused && closed_under_us) {
                stream.reset();  // the receiver closed it meanwhile: once more on a new connection
                continue;
            }
            fail(herr, werr ? "write" : "read");
            co_return out;
        }
        const auto& res = parser->get();
        if (parser->keep_alive() && buffer.size() == 0) {
            PutIdle(key, std::move(stream));
        } else {
            beast::error_code ignored;
            stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
        }
        if (res.result_int() < 200 || res.result_int() > 299) {
            out.kind = CallResult::Kind::kFailed;
            out.error = "HTTP " + std::to_string(res.result_int());
            co_return out;
        }
        if (pre_send && !res.body().empty()) {
            if (res.body().find('{') == std::string::npos) {
                out.kind = CallResult::Kind::kFailed;
                out.error = "the answer is not a JSON object";
                co_return out;
            }
            hpb::PreSendReply reply;
            google::protobuf::util::JsonParseOptions jo;
            jo.ignore_unknown_fields = true;
            if (!google::protobuf::util::JsonStringToMessage(res.body(), &reply, jo).ok()) {
                out.kind = CallResult::Kind::kFailed;
                out.error = "the answer is not a PreSendReply JSON object";
                co_return out;
            }
            co_return CallResult::FromReply(reply);
        }
        co_return out;
    }

    asio::awaitable<CallResult> CallGrpc(std::shared_ptr<Hook> hook, hpb::HookEvent event, bool pre_send) {
        struct Call {
            grpc::ClientContext ctx;
            hpb::HookEvent req;
            hpb::PreSendReply pre;
            hpb::EventAck ack;
            grpc::Status status;
        };
        auto call = std::make_shared<Call>();
        call->req = std::move(event);
        call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(hook->spec.timeout_ms));
        asio::steady_timer done_signal(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
        auto finished = std::make_shared<std::atomic<bool>>(false);
        auto on_done = [call, &done_signal, finished, ex = done_signal.get_executor()](grpc::Status s) {
            call->status = std::move(s);
            asio::post(ex, [&done_signal, finished] {
                finished->store(true);
                done_signal.cancel();
            });
        };
        if (pre_send) {
            hook->stub->async()->PreSend(&call->ctx, &call->req, &call->pre, on_done);
        } else {
            hook->stub->async()->OnEvent(&call->ctx, &call->req, &call->ack, on_done);
        }
        while (!finished->load()) {
            (void)co_await done_signal.async_wait(kTuple);
        }
        CallResult out;
        if (!call->status.ok()) {
            out.kind = call->status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ? CallResult::Kind::kTimeout
                                                                                         : CallResult::Kind::kFailed;
            out.error = call->status.error_message();
            co_return out;
        }
        co_return pre_send ? CallResult::FromReply(call->pre) : out;
    }

    // The keyword filter and the rate limit run inline.
    CallResult Builtin(Hook& hook, const HookEvent& e) {
        CallResult out;
        const HookSpec& s = hook.spec;
        if (s.transport == "keyword_filter") {
            std::string text = e.message.text;
            if (!s.mask) {
                if (hook.keywords->Any(text)) {
                    out.verdict.action = PreSendVerdict::Action::kReject;
                    out.verdict.reason = "the message contains a word that is not allowed here";
                }
                return out;
            }
            const auto spans = hook.keywords->Spans(text);
            if (spans.empty()) return out;
            for (auto [pos, len] : spans) {
                for (size_t i = pos; i < pos + len; ++i) text[i] = '*';
            }
            out.verdict.action = PreSendVerdict::Action::kRewrite;
            out.verdict.text = std::move(text);
            return out;
        }
        if (s.transport == "rate_limit") {
            const int64_t now = clock.NowMs();
            Limiter& l = *hook.limiter;
            std::lock_guard lock(l.mu);
            if (l.windows.size() > 100'000) {
                // Bounded: drop the windows that are over (they would start afresh anyway).
                std::erase_if(l.windows, [&](const auto& w) {
                    return now - w.second.first >= static_cast<int64_t>(s.rate_window_ms);
                });
            }
            auto& [start, count] = l.windows[e.tenant_id + '\x1f' + e.user_id];
            if (now - start >= static_cast<int64_t>(s.rate_window_ms)) {
                start = now;
                count = 0;
            }
            if (++count > s.rate_limit) {
                out.verdict.action = PreSendVerdict::Action::kReject;
                out.verdict.reason = "rate_limited: at most " + std::to_string(s.rate_limit) + " messages per " +
                                     std::to_string(s.rate_window_ms) + " ms";
            }
            return out;
        }
        return out;
    }

    asio::awaitable<CallResult> CallOnce(std::shared_ptr<Hook> hook, const HookEvent& e) {
        const bool pre = e.point == HookPoint::kPreSend;
        if (hook->spec.transport == "keyword_filter" || hook->spec.transport == "rate_limit") {
            co_return Builtin(*hook, e);
        }
        hpb::HookEvent p;
        ToProto(e, &p);
        p.set_hook(hook->spec.name);
        if (hook->spec.transport == "grpc") {
            co_return co_await CallGrpc(hook, std::move(p), pre);
        }
        co_return co_await PostWebhook(hook, EventJson(p), pre);
    }

    void Record(Hook& hook, const CallResult& r, std::chrono::steady_clock::time_point start) {
        Stats& s = *hook.stats;
        ++s.calls;
        s.latency_us_sum += static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
        if (r.kind == CallResult::Kind::kTimeout) {
            ++s.timeouts;
        } else if (r.kind == CallResult::Kind::kFailed) {
            ++s.failures;
        } else if (r.verdict.action == PreSendVerdict::Action::kReject) {
            ++s.rejections;
        } else if (r.verdict.action == PreSendVerdict::Action::kRewrite) {
            ++s.rewrites;
        }
    }

    asio::awaitable<void> RunPreSend(std::shared_ptr<const HookList> list, HookEvent e, Callback<PreSendVerdict> done) {
        PreSendVerdict result;
        const std::string original = e.message.text;
        // The whole chain answers within the budget (callers give up after kPreSendBudget + 2 s):
        // a hook that would run past it gets only what is left, and its failure policy applies.
        const auto deadline = std::chrono::steady_clock::now() + kPreSendBudget;
        for (const auto& hook : *list) {
            if (!Matches(*hook, e)) continue;
            const auto start = std::chrono::steady_clock::now();
            CallResult r;
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - start);
            if (left.count() <= 0) {
                r.kind = CallResult::Kind::kTimeout;
                r.error = "the pre_send chain used up its time";
            } else if (left.count() < static_cast<int64_t>(hook->spec.timeout_ms)) {
                auto shortened = std::make_shared<Hook>();
                shortened->spec = hook->spec;
                shortened->spec.timeout_ms = static_cast<uint32_t>(left.count());
                shortened->stats = hook->stats;
                shortened->stub = hook->stub;
                shortened->limiter = hook->limiter;
                r = co_await CallOnce(shortened, e);
            } else {
                r = co_await CallOnce(hook, e);
            }
            Record(*hook, r, start);
            if (r.kind != CallResult::Kind::kOk) {
                spdlog::warn("hook '{}' (pre_send) {}: {}", hook->spec.name,
                             r.kind == CallResult::Kind::kTimeout ? "timed out" : "failed", r.error);
                if (hook->spec.fail_open) continue;
                result.action = PreSendVerdict::Action::kReject;
                result.reason = "the message could not be checked (hook '" + hook->spec.name + "' " +
                                (r.kind == CallResult::Kind::kTimeout ? "timed out" : "failed") + ")";
                result.hook = hook->spec.name;
                done(result);
                co_return;
            }
            if (r.verdict.action == PreSendVerdict::Action::kReject) {
                result = r.verdict;
                result.reason = Utf8Prefix(result.reason, kMaxReasonBytes);
                result.hook = hook->spec.name;
                if (result.reason.empty()) result.reason = "rejected by hook '" + hook->spec.name + "'";
                done(result);
                co_return;
            }
            if (r.verdict.action == PreSendVerdict::Action::kRewrite) {
                e.message.text = r.verdict.text;  // the next hooks see the rewritten text
                result.hook = hook->spec.name;
            }
        }
        if (e.message.text != original) {
            result.action = PreSendVerdict::Action::kRewrite;
            result.text = e.message.text;
        }
        done(result);
    }

    // Takes a place in the asynchronous queue for `owner` ("" for the files' hooks): each tenant's
    // hooks get at most a tenth of it, so one tenant cannot crowd out the others.
    bool Reserve(const std::string& owner) {
        std::lock_guard lock(mu);
        const size_t share = owner.empty() ? options.max_queued : std::max<size_t>(options.max_queued / 10, 1);
        auto& n = tenant_queued[owner];
        if (queued.load() >= options.max_queued || n >= share) {
            if (n == 0) tenant_queued.erase(owner);
            return false;
        }
        ++n;
        ++queued;
        return true;
    }
    void Release(const std::string& owner) {
        std::lock_guard lock(mu);
        auto it = tenant_queued.find(owner);
        if (it != tenant_queued.end() && --it->second == 0) {
            tenant_queued.erase(it);
        }
        --queued;
    }

    asio::awaitable<void> Deliver(std::shared_ptr<Hook> hook, HookEvent e) {
        struct Leave {
            Impl* impl;
            std::string owner;
            ~Leave() { impl->Release(owner); }
        } leave{this, hook->spec.owner_tenant};
        auto backoff = std::chrono::milliseconds(hook->spec.retry_backoff_ms);
        for (uint32_t attempt = 1;; ++attempt) {
            const auto start = std::chrono::steady_clock::now();
            CallResult r = co_await CallOnce(hook, e);
            Record(*hook, r, start);
            if (r.kind == CallResult::Kind::kOk) co_return;
            if (attempt >= hook->spec.max_attempts) {
                ++hook->stats->given_up;
                spdlog::warn("hook '{}' ({}) gave up after {} attempts: {}", hook->spec.name,
                             HookPointName(e.point), attempt, r.error);
                co_return;
            }
            ++hook->stats->retries;
            asio::steady_timer t(co_await asio::this_coro::executor, backoff);
            (void)co_await t.async_wait(kTuple);
            backoff = std::min(backoff * 2, std::chrono::milliseconds(60'000));
        }
    }
};

HookEngine::HookEngine(HookEngineOptions options, HookStore* store, const Clock& clock)
    : impl_(std::make_shared<Impl>(std::move(options), store, clock)) {}

HookEngine::~HookEngine() { Stop(); }

Status HookEngine::Start() {
    auto files = LoadHookFiles(impl_->options.file, impl_->options.dir);
    if (!files) {
        return files.error();
    }
    std::vector<StoredHook> stored;
    if (impl_->store != nullptr) {
        auto p = std::make_shared<std::promise<Result<std::vector<StoredHook>>>>();
        auto f = p->get_future();
        impl_->store->LoadHooks([p](Result<std::vector<StoredHook>> r) { p->set_value(std::move(r)); });
        auto r = f.get();
        if (!r) {
            return r.error();
        }
        stored = std::move(*r);
    }
    {
        std::lock_guard lock(impl_->mu);
        impl_->file_hooks = std::move(*files);
        for (const auto& h : stored) {
            auto spec = HookFromJson(h.spec_json);
            if (!spec) {
                spdlog::error("hooks: stored hook '{}' of tenant '{}' is invalid and not used: {}", h.name, h.tenant_id,
                              spec.error().message);
                continue;
            }
            spec->owner_tenant = h.tenant_id;
            spec->source = "api";
            impl_->api_hooks[{h.tenant_id, h.name}] = std::move(*spec);
        }
        impl_->RebuildLocked();
    }
    impl_->work.emplace(impl_->io.get_executor());
    // One thread: every coroutine, timer and stream of the engine runs on it (no strand needed);
    // webhook and gRPC calls are asynchronous, so it waits on none of them.
    impl_->threads.emplace_back([impl = impl_.get()] { impl->io.run(); });
    spdlog::info("hooks: {} configured ({} from files)", hook_count(), impl_->file_hooks.size());
    return {};
}

Status HookEngine::Reload() {
    auto files = LoadHookFiles(impl_->options.file, impl_->options.dir);
    if (!files) {
        return files.error();  // the caller says so (SIGHUP handlers log it once)
    }
    std::lock_guard lock(impl_->mu);
    impl_->file_hooks = std::move(*files);
    impl_->RebuildLocked();
    spdlog::info("hooks: reloaded, {} from files", impl_->file_hooks.size());
    return {};
}

void HookEngine::Stop() {
    if (!impl_->work) {
        return;
    }
    impl_->work.reset();
    impl_->io.stop();
    for (auto& t : impl_->threads) {
        t.join();
    }
    impl_->threads.clear();
}

size_t HookEngine::hook_count() const { return impl_->Snapshot()->size(); }

bool HookEngine::Wants(HookPoint point) const {
    return (impl_->active.load() & (1u << static_cast<int>(point))) != 0;
}

void HookEngine::PreSend(HookEvent event, Callback<PreSendVerdict> done) {
    if (!Wants(HookPoint::kPreSend)) {
        // Answered on the engine's thread, never inline: a caller's queue of sends does not recurse.
        asio::post(impl_->io, [done = std::move(done)] { done(PreSendVerdict{}); });
        return;
    }
    event.point = HookPoint::kPreSend;
    auto list = impl_->Snapshot();
    auto run = [impl = impl_, list = std::move(list), event = std::move(event),
                done = std::move(done)]() mutable -> asio::awaitable<void> {
        co_await impl->RunPreSend(std::move(list), std::move(event), std::move(done));
    };
    asio::co_spawn(impl_->io, std::move(run), asio::detached);
}

void HookEngine::Publish(HookEvent event) {
    if (!Wants(event.point)) {
        return;
    }
    auto list = impl_->Snapshot();
    for (const auto& hook : *list) {
        if (!Impl::Matches(*hook, event) || hook->spec.transport == "keyword_filter" ||
            hook->spec.transport == "rate_limit") {
            continue;
        }
        if (!impl_->Reserve(hook->spec.owner_tenant)) {
            ++impl_->dropped;
            continue;
        }
        auto deliver = [impl = impl_, hook, event]() -> asio::awaitable<void> {
            co_await impl->Deliver(hook, event);
        };
        asio::co_spawn(impl_->io, std::move(deliver), asio::detached);
    }
}

void HookEngine::PutHook(std::string tenant_id, HookSpec spec, StatusCallback done) {
    spec.owner_tenant = tenant_id;
    spec.source = "api";
    spec.tenants.clear();  // a tenant's hook sees only its tenant
    {
        std::lock_guard lock(impl_->mu);
        auto existing = impl_->api_hooks.find({tenant_id, spec.name});
        if (spec.secret == kSecretShown) {
            // What ListHooks shows for a secret: keep the hook's own.
            if (existing == impl_->api_hooks.end()) {
                return done(MakeError(Errc::kInvalidArgument, "bad_hook", "secret: give the webhook's secret"));
            }
            spec.secret = existing->second.secret;
        }
        size_t count = 0;
        for (const auto& [key, h] : impl_->api_hooks) {
            count += key.first == tenant_id ? 1 : 0;
        }
        if (existing == impl_->api_hooks.end() && count >= kMaxHooksPerTenant) {
            return done(MakeError(Errc::kResourceExhausted, "too_many_hooks",
                                  "a tenant has at most " + std::to_string(kMaxHooksPerTenant) + " hooks"));
        }
    }
    if (auto s = ValidateHook(spec); !s) {
        return done(s.error());
    }
    // A tenant's names are its own: the configuration files' hooks (the operator's) may use the same
    // ones, and a reload that adds one never blocks the tenant's updates.
    auto apply = [impl = impl_, tenant_id, spec, done = std::move(done)](Status s) {
        if (s) {
            std::lock_guard lock(impl->mu);
            impl->api_hooks[{tenant_id, spec.name}] = spec;
            impl->RebuildLocked();
        }
        done(std::move(s));
    };
    if (impl_->store == nullptr) {
        return apply(Status{});
    }
    impl_->store->SaveHook(StoredHook{tenant_id, spec.name, HookToJson(spec)}, std::move(apply));
}

void HookEngine::DeleteHook(std::string tenant_id, std::string name, StatusCallback done) {
    {
        std::lock_guard lock(impl_->mu);
        if (!impl_->api_hooks.contains({tenant_id, name})) {
            return done(MakeError(Errc::kNotFound, "unknown_hook", "name: tenant has no hook '" + Utf8Prefix(name, 80) + "'"));
        }
    }
    auto apply = [impl = impl_, tenant_id, name, done = std::move(done)](Status s) {
        if (s || s.error().reason == "unknown_hook") {
            std::lock_guard lock(impl->mu);
            impl->api_hooks.erase({tenant_id, name});
            impl->RebuildLocked();
            s = Status{};
        }
        done(std::move(s));
    };
    if (impl_->store == nullptr) {
        return apply(Status{});
    }
    impl_->store->DeleteHook(tenant_id, name, std::move(apply));
}

void HookEngine::ListHooks(std::string tenant_id, Callback<std::vector<HookSpec>> done) {
    std::vector<HookSpec> out;
    {
        std::lock_guard lock(impl_->mu);
        for (const auto& [key, spec] : impl_->api_hooks) {
            if (key.first == tenant_id) {
                out.push_back(spec);
                if (!out.back().secret.empty()) {
                    out.back().secret = kSecretShown;  // never handed out; PutHook with it keeps it
                }
            }
        }
    }
    done(std::move(out));
}

std::string HookEngine::RenderMetrics(const std::string* tenant) const {
    std::string out;
    auto list = impl_->Snapshot();
    struct Family {
        const char* name;
        const char* help;
        std::atomic<uint64_t> Stats::*field;
    };
    static const Family kFamilies[] = {
        {"flare_hook_calls_total", "calls made to the hook (each retry is a call)", &Stats::calls},
        {"flare_hook_rejections_total", "pre_send calls the hook answered with reject", &Stats::rejections},
        {"flare_hook_rewrites_total", "pre_send calls the hook answered with rewrite", &Stats::rewrites},
        {"flare_hook_failures_total", "calls that failed (connection, HTTP status, bad answer)", &Stats::failures},
        {"flare_hook_timeouts_total", "calls that hit the hook's timeout", &Stats::timeouts},
        {"flare_hook_retries_total", "asynchronous deliveries retried", &Stats::retries},
        {"flare_hook_given_up_total", "asynchronous deliveries dropped after the last attempt", &Stats::given_up},
        {"flare_hook_latency_seconds_sum", "time spent in calls to the hook", &Stats::latency_us_sum},
    };
    for (const auto& f : kFamilies) {
        const bool seconds = f.field == &Stats::latency_us_sum;
        out += std::string("# HELP ") + f.name + " " + f.help + "\n# TYPE " + f.name + " counter\n";
        for (const auto& h : *list) {
            if (tenant != nullptr && h->spec.owner_tenant != *tenant) {
                continue;
            }
            const uint64_t v = (*h->stats.*f.field).load();
            out += std::string(f.name) + "{hook=\"" + Escape(h->spec.name) + "\",tenant=\"" +
                   Escape(h->spec.owner_tenant) + "\"} " +
                   (seconds ? std::to_string(static_cast<double>(v) / 1e6) : std::to_string(v)) + "\n";
        }
    }
    out += "# HELP flare_hook_queued asynchronous hook deliveries waiting or retrying\n# TYPE flare_hook_queued gauge\n";
    out += "flare_hook_queued " + std::to_string(impl_->queued.load()) + "\n";
    out += "# HELP flare_hook_dropped_total events not delivered because the queue was full\n"
           "# TYPE flare_hook_dropped_total counter\n";
    out += "flare_hook_dropped_total " + std::to_string(impl_->dropped.load()) + "\n";
    return out;
}

}  // namespace flare::hooks
