#include "gateway/ws_gateway.hpp"
#include "net/listen.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/url/parse.hpp>
#include <deque>
#include <map>
#include <optional>
#include <mutex>
#include <unordered_map>

namespace flare::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kCloseGrace = std::chrono::seconds(5);

websocket::close_code CloseCodeFor(const std::string& reason) {
    if (reason == "shutdown") {
        return websocket::close_code::going_away;
    }
    if (reason == "unauthenticated" || reason == "slow_consumer" || reason == "auth_timeout") {
        return websocket::close_code::policy_error;
    }
    if (reason == "unavailable") {
        return websocket::close_code::try_again_later;
    }
    return websocket::close_code::normal;
}

struct UpgradeParams {
    std::string token;
    std::string platform;
    bool json = false;
    bool batch = false;
};

void AppendVarint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7F) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}

constexpr size_t kMaxBatchBytes = 64 * 1024;
constexpr size_t kMaxBatchFrames = 256;

UpgradeParams ParseUpgrade(const http::request<http::empty_body>& req) {
    UpgradeParams p;
    auto auth = req[http::field::authorization];
    if (auth.starts_with("Bearer ")) {
        p.token = std::string(auth.substr(7));
    }
    auto url = boost::urls::parse_origin_form(std::string_view(req.target().data(), req.target().size()));
    if (url) {
        for (auto param : url->params()) {
            if (param.key == "token" && p.token.empty()) {
                p.token = param.value;
            } else if (param.key == "platform") {
                p.platform = param.value;
            } else if (param.key == "format") {
                p.json = param.value == "json";
            } else if (param.key == "batch") {
                p.batch = param.value == "1" || param.value == "true";
            }
        }
    }
    return p;
}

}  // namespace

class WsConnection;

struct WsGateway::Impl : std::enable_shared_from_this<WsGateway::Impl> {
    Impl(asio::io_context& io, GatewayOptions opts, GatewayServices svc)
        : io(io), options(std::move(opts)), services(svc), acceptor(io), retry_timer(io) {}

    void Accept();
    void Remove(uint64_t id) {
        std::lock_guard lock(mu);
        connections.erase(id);
    }
    std::shared_ptr<WsConnection> Find(uint64_t id) {
        std::lock_guard lock(mu);
        auto it = connections.find(id);
        return it == connections.end() ? nullptr : it->second.lock();
    }

    asio::io_context& io;
    GatewayOptions options;
    GatewayServices services;
    tcp::acceptor acceptor;
    asio::steady_timer retry_timer;
    std::atomic<uint64_t> next_id{1};
    mutable std::mutex mu;
    std::unordered_map<uint64_t, std::weak_ptr<WsConnection>> connections;
    std::unordered_map<uint64_t, DeviceSession> devices;  // registered in presence, by connection id
    bool stopping = false;
};

class WsConnection final : public std::enable_shared_from_this<WsConnection>, public SessionHost {
public:
    WsConnection(tcp::socket socket, std::shared_ptr<WsGateway::Impl> gateway, uint64_t id)
        : ws_(std::move(socket)), gateway_(std::move(gateway)), id_(id), idle_timer_(ws_.get_executor()) {}

    void Run() {
        asio::co_spawn(ws_.get_executor(), ReadLoop(shared_from_this()), [id = id_](std::exception_ptr e) {
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                    spdlog::error("gateway: connection {} ended with an exception: {}", id, ex.what());
                }
            }
        });
    }

    template <typename Fn>
    void Post(Fn fn) {
        asio::post(ws_.get_executor(), std::move(fn));
    }

    bool text_mode() const { return text_mode_.load(std::memory_order_relaxed); }

    void EnableBatching() override { batching_ = true; }

    // SessionHost (on the strand)
    void Send(const pb::ServerFrame& frame) override {
        const bool text = text_mode();
        Enqueue(std::make_shared<const std::string>(EncodeServerFrame(frame, text)), text, false);
    }

    void Close(const std::string& reason, const std::string& message) override {
        if (closing_ || closed_) {
            return;
        }
        closing_ = true;
        close_reason_ = reason;
        if (reason == "slow_consumer") {
            // Keep only the write in flight; the client re-syncs by seq after reconnecting.
            while (queue_.size() > (writing_ ? 1u : 0u)) {
                queued_bytes_ -= queue_.back().data->size();
                queue_.pop_back();
            }
        }
        // A peer that does not read never lets the goodbye and the close handshake finish: give it a
        // few seconds, then drop the socket.
        idle_timer_.expires_after(kCloseGrace);
        idle_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
            if (!ec && !self->closed_) {
                self->Abort();
            }
        });
        pb::ServerFrame f;
        f.mutable_goodbye()->set_reason(reason);
        f.mutable_goodbye()->set_message(message);
        const bool text = text_mode();
        Enqueue(std::make_shared<const std::string>(EncodeServerFrame(f, text)), text, true);
    }

    // On the strand. True when this connection was already handed `seq` of the conversation (or a
    // later one): the bus delivers at least once, a client sees each message once. Seq 0 (live-only
    // broadcasts) is never deduplicated.
    bool AlreadyPushed(const std::string& conversation_id, uint64_t seq) {
        if (seq == 0) {
            return false;
        }
        auto it = pushed_.find(conversation_id);
        if (it == pushed_.end()) {
            pushed_.emplace(conversation_id, seq);
            return false;
        }
        if (it->second >= seq) {
            return true;
        }
        it->second = seq;
        return false;
    }

    void EnqueuePush(std::shared_ptr<const std::string> data, bool text) {
        if (session_ && session_->authenticated()) {
            Enqueue(std::move(data), text, false);
        }
    }

private:
    // The HTTP upgrade, in its own coroutine so that its parser and request are freed once the
    // WebSocket is open (they would otherwise live as long as the connection).
    asio::awaitable<std::optional<UpgradeParams>> Handshake() {
        const GatewayOptions& opt = gateway_->options;
        beast::flat_buffer buffer;
        http::request_parser<http::empty_body> parser;
        parser.header_limit(16 * 1024);
        auto& tcp_stream = beast::get_lowest_layer(ws_);
        tcp_stream.expires_after(std::chrono::milliseconds(opt.auth_timeout_ms));
        auto [read_ec, read_n] = co_await http::async_read_header(tcp_stream, buffer, parser, kTuple);
        if (read_ec) {
            if (read_ec != asio::error::eof && read_ec != beast::error::timeout &&
                read_ec != asio::error::connection_reset) {
                co_await ServeBadRequest(read_ec == http::error::header_limit
                                             ? http::status::request_header_fields_too_large
                                             : http::status::bad_request);
            }
            co_return std::nullopt;
        }
        const auto& req = parser.get();
        if (!websocket::is_upgrade(req)) {
            co_await ServeHttp(req);
            co_return std::nullopt;
        }
        UpgradeParams params = ParseUpgrade(req);
        text_mode_ = params.json;
        tcp_stream.expires_never();
        websocket::stream_base::timeout t{};
        t.handshake_timeout = std::chrono::seconds(10);
        t.idle_timeout = websocket::stream_base::none();
        t.keep_alive_pings = false;
        ws_.set_option(t);
        ws_.set_option(websocket::stream_base::decorator(
            [](websocket::response_type& res) { res.set(http::field::server, "flare-im-core"); }));
        ws_.read_message_max(opt.hard_max_frame_bytes);
        ws_.auto_fragment(false);
        auto [accept_ec] = co_await ws_.async_accept(req, kTuple);
        if (accept_ec) {
            co_return std::nullopt;
        }
        co_return params;
    }

    asio::awaitable<void> ReadLoop(std::shared_ptr<WsConnection> self) {
        const GatewayOptions& opt = gateway_->options;
        std::optional<UpgradeParams> upgraded = co_await Handshake();
        if (!upgraded) {
            co_return Finish();
        }
        UpgradeParams params = std::move(*upgraded);
        batching_ = params.batch;
        beast::flat_buffer buffer;
        GatewayServices svc = gateway_->services;
        session_ = std::make_shared<ClientSession>(
            opt, svc, [weak = weak_from_this(), ex = ws_.get_executor()](std::function<void()> fn) {
                asio::post(ex, std::move(fn));
            },
            this, id_, params.platform);
        last_activity_ = std::chrono::steady_clock::now();
        opened_ = last_activity_;
        ArmIdle();
        session_->Start(params.token);
        for (;;) {
            buffer.clear();
            if (buffer.capacity() > 16 * 1024) {
                buffer.shrink_to_fit();  // one large frame must not pin its buffer for the connection's life
            }
            auto [ec, n] = co_await ws_.async_read(buffer, kTuple);
            if (ec) {
                if (ec == websocket::error::message_too_big) {
                    spdlog::debug("gateway: connection {} sent a frame above the hard limit", id_);
                }
                break;
            }
            last_activity_ = std::chrono::steady_clock::now();
            if (closing_) {
                continue;
            }
            const bool text = ws_.got_text();
            text_mode_ = text;
            if (n > opt.max_frame_bytes) {
                session_->OnBadFrame(MakeError(Errc::kInvalidArgument, "frame_too_large",
                                               "frame is " + std::to_string(n) + " bytes; the limit is " +
                                                   std::to_string(opt.max_frame_bytes)));
                continue;
            }
            auto data = buffer.cdata();
            auto frame = DecodeClientFrame(std::string_view(static_cast<const char*>(data.data()), data.size()), text);
            if (!frame) {
                session_->OnBadFrame(frame.error());
            } else {
                session_->OnFrame(std::move(frame.value()));
            }
        }
        Finish();
    }

    asio::awaitable<void> ServeHttp(const http::request<http::empty_body>& req) {
        http::response<http::string_body> res;
        res.version(req.version());
        res.keep_alive(false);
        res.set(http::field::server, "flare-im-core");
        res.set(http::field::content_type, "text/plain");
        std::string_view path(req.target().data(), req.target().size());
        path = path.substr(0, path.find('?'));
        if (path == "/healthz" || path == "/readyz") {
            res.result(http::status::ok);
            res.body() = "ok\n";
        } else {
            res.result(http::status::upgrade_required);
            res.body() = "Flare IM Core access gateway: connect with WebSocket (see docs/PROTOCOL.md)\n";
        }
        res.prepare_payload();
        auto& s = beast::get_lowest_layer(ws_);
        s.expires_after(std::chrono::seconds(5));
        co_await http::async_write(s, res, kTuple);
    }

    asio::awaitable<void> ServeBadRequest(http::status status) {
        http::response<http::string_body> res{status, 11};
        res.keep_alive(false);
        res.set(http::field::server, "flare-im-core");
        res.set(http::field::content_type, "text/plain");
        res.body() = "malformed HTTP request; this port speaks WebSocket (see docs/PROTOCOL.md)\n";
        res.prepare_payload();
        auto& s = beast::get_lowest_layer(ws_);
        s.expires_after(std::chrono::seconds(5));
        co_await http::async_write(s, res, kTuple);
    }

    void ArmIdle() {
        const GatewayOptions& opt = gateway_->options;
        const bool authed = session_ && session_->authenticated();
        // Before authentication the earlier of both deadlines, so the idle check starts on time; while a
        // write is in flight, also when it would have stalled.
        auto deadline = authed ? last_activity_ + std::chrono::milliseconds(opt.idle_timeout_ms)
                               : opened_ + std::chrono::milliseconds(std::min(opt.auth_timeout_ms, opt.idle_timeout_ms));
        if (writing_) {
            deadline = std::min(deadline, write_started_ + std::chrono::milliseconds(opt.write_stall_timeout_ms));
        }
        idle_timer_.expires_at(deadline);
        idle_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
            if (ec || self->closed_ || self->closing_) {
                return;
            }
            const GatewayOptions& opt = self->gateway_->options;
            const auto now = std::chrono::steady_clock::now();
            if (self->writing_ &&
                now - self->write_started_ >= std::chrono::milliseconds(opt.write_stall_timeout_ms)) {
                spdlog::warn("gateway: connection {} ({}) has not taken a frame for {} ms; closing as a slow consumer",
                             self->id_, self->session_->principal().user_id, opt.write_stall_timeout_ms);
                return self->Close("slow_consumer", "the client reads too slowly; reconnect and sync");
            }
            if (!self->session_->authenticated()) {
                if (now - self->opened_ >= std::chrono::milliseconds(opt.auth_timeout_ms)) {
                    return self->Close("auth_timeout", "no authentication within " +
                                                           std::to_string(opt.auth_timeout_ms) + " ms");
                }
            } else if (now - self->last_activity_ >= std::chrono::milliseconds(opt.idle_timeout_ms)) {
                return self->Close("idle_timeout",
                                   "no frame for " + std::to_string(opt.idle_timeout_ms) + " ms; send pings");
            }
            self->ArmIdle();
        });
    }

    void Enqueue(std::shared_ptr<const std::string> data, bool text, bool bypass_limits) {
        if (closed_ || (closing_ && !bypass_limits)) {
            return;
        }
        const GatewayOptions& opt = gateway_->options;
        // One frame is always accepted into an empty queue, however large (a big sync page).
        if (!bypass_limits && !queue_.empty() &&
            (queue_.size() >= opt.max_queued_frames || queued_bytes_ + data->size() > opt.max_queued_bytes)) {
            spdlog::warn("gateway: connection {} ({}) is a slow consumer: {} frames queued; closing", id_,
                         session_ ? session_->principal().user_id : "", queue_.size());
            Close("slow_consumer", "the client reads too slowly; reconnect and sync");
            return;
        }
        queued_bytes_ += data->size();
        queue_.push_back(Outbound{std::move(data), text});
        if (!writing_) {
            DoWrite();
        }
    }

    void DoWrite() {
        if (queue_.empty()) {
            writing_ = false;
            if (closing_ && !close_sent_) {
                DoClose();
            }
            return;
        }
        if (!writing_) {
            writing_ = true;
            write_started_ = std::chrono::steady_clock::now();
            if (session_ && !closing_) {
                ArmIdle();  // so that a stalled write is noticed
            }
        } else {
            write_started_ = std::chrono::steady_clock::now();
        }
        if (batching_ && queue_.size() > 1 && !queue_.front().text) {
            Coalesce();
        }
        const Outbound& f = queue_.front();
        ws_.text(f.text);
        // The completion owns the buffer too: Finish() may clear the queue while the write is in flight.
        ws_.async_write(asio::buffer(*f.data), [self = shared_from_this(), data = f.data](beast::error_code ec,
                                                                                         size_t) {
            if (self->closed_) {
                return;
            }
            self->queued_bytes_ -= data->size();
            self->queue_.pop_front();
            if (ec) {
                self->writing_ = false;
                self->Abort();
                return;
            }
            self->DoWrite();
        });
    }

    // Replaces the leading binary frames of the queue by one Batch frame holding them, in order:
    // its encoding is the frames' own bytes, each as field 1 of a Batch, wrapped as field 23 of a
    // ServerFrame, so nothing is decoded or encoded again.
    void Coalesce() {
        size_t count = 0, bytes = 0;
        for (const Outbound& o : queue_) {
            if (o.text || count == kMaxBatchFrames || (count > 0 && bytes + o.data->size() > kMaxBatchBytes)) {
                break;
            }
            ++count;
            bytes += o.data->size();
        }
        if (count < 2) {
            return;
        }
        std::string inner;
        inner.reserve(bytes + 6 * count);
        for (size_t i = 0; i < count; ++i) {
            const std::string& d = *queue_[i].data;
            inner.push_back(0x0A);  // field 1, length-delimited
            AppendVarint(inner, d.size());
            inner.append(d);
        }
        auto batch = std::make_shared<std::string>();
        batch->reserve(inner.size() + 8);
        batch->push_back(static_cast<char>(0xBA));  // field 23, length-delimited: (23 << 3) | 2
        batch->push_back(0x01);
        AppendVarint(*batch, inner.size());
        batch->append(inner);
        for (size_t i = 0; i < count; ++i) {
            queued_bytes_ -= queue_.front().data->size();
            queue_.pop_front();
        }
        queued_bytes_ += batch->size();
        queue_.push_front(Outbound{std::move(batch), false});
    }

    void DoClose() {
        close_sent_ = true;
        ws_.async_close(websocket::close_reason(CloseCodeFor(close_reason_), close_reason_),
                        [self = shared_from_this()](beast::error_code) { self->Abort(); });
    }

    void Abort() {
        beast::error_code ignored;
        beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
        beast::get_lowest_layer(ws_).socket().close(ignored);
    }

    void Finish() {
        if (closed_) {
            return;
        }
        closed_ = true;
        idle_timer_.cancel();
        if (session_) {
            session_->OnClosed();
        }
        queue_.clear();
        queued_bytes_ = 0;
        Abort();
        gateway_->Remove(id_);
    }

    struct Outbound {
        std::shared_ptr<const std::string> data;
        bool text;
    };

    websocket::stream<beast::tcp_stream> ws_;
    std::shared_ptr<WsGateway::Impl> gateway_;
    uint64_t id_;
    asio::steady_timer idle_timer_;
    std::shared_ptr<ClientSession> session_;
    std::deque<Outbound> queue_;
    std::map<std::string, uint64_t, std::less<>> pushed_;  // conversation -> newest seq pushed
    uint64_t queued_bytes_ = 0;
    std::atomic<bool> text_mode_{false};
    bool writing_ = false, closing_ = false, close_sent_ = false, closed_ = false, batching_ = false;
    std::string close_reason_;
    std::chrono::steady_clock::time_point last_activity_, opened_, write_started_;
};

void WsGateway::Impl::Accept() {
    acceptor.async_accept(asio::make_strand(io), [self = shared_from_this()](beast::error_code ec, tcp::socket s) {
        if (self->stopping) {
            return;
        }
        if (ec) {
            if (ec == asio::error::operation_aborted) {
                return;
            }
            // EMFILE and friends: back off instead of spinning.
            spdlog::warn("gateway: accept failed: {}; retrying in 100 ms", ec.message());
            self->retry_timer.expires_after(std::chrono::milliseconds(100));
            self->retry_timer.async_wait([self](beast::error_code e) {
                if (!e) {
                    self->Accept();
                }
            });
            return;
        }
        beast::error_code ignored;
        s.set_option(tcp::no_delay(true), ignored);
        const uint64_t id = self->next_id.fetch_add(1);
        auto conn = std::make_shared<WsConnection>(std::move(s), self, id);
        {
            std::lock_guard lock(self->mu);
            self->connections.emplace(id, conn);
        }
        conn->Run();
        self->Accept();
    });
}

WsGateway::WsGateway(asio::io_context& io, GatewayOptions options, ConversationApi& sessions,
                     MessagingApi& orchestrator, PresenceRegistry& presence, const Clock& clock)
    : impl_(std::make_shared<Impl>(io, std::move(options),
                                   GatewayServices{sessions, orchestrator, presence, *this, clock})) {
    std::weak_ptr<Impl> weak = impl_;
    impl_->services.on_registered = [weak](const DeviceSession& d) {
        if (auto impl = weak.lock()) {
            std::lock_guard lock(impl->mu);
            impl->devices[d.connection_id] = d;
        }
    };
    impl_->services.on_unregistered = [weak](uint64_t id) {
        if (auto impl = weak.lock()) {
            std::lock_guard lock(impl->mu);
            impl->devices.erase(id);
        }
    };
}

bool WsGateway::IsRegistered(uint64_t connection_id) const {
    std::lock_guard lock(impl_->mu);
    return impl_->devices.contains(connection_id);
}

std::vector<DeviceSession> WsGateway::RegisteredDevices() const {
    std::lock_guard lock(impl_->mu);
    std::vector<DeviceSession> out;
    out.reserve(impl_->devices.size());
    for (const auto& [id, d] : impl_->devices) {
        out.push_back(d);
    }
    return out;
}

WsGateway::~WsGateway() = default;

Status WsGateway::Listen() {
    const auto& opt = impl_->options;
    return net::BindAndListen(impl_->acceptor, opt.listen_address, opt.port, "gateway (PORT)");
}

uint16_t WsGateway::port() const { return net::BoundPort(impl_->acceptor); }

void WsGateway::Start() { impl_->Accept(); }

void WsGateway::Stop() {
    asio::post(impl_->acceptor.get_executor(), [impl = impl_] {
        impl->stopping = true;
        beast::error_code ignored;
        impl->acceptor.close(ignored);
        impl->retry_timer.cancel();
    });
    std::vector<std::shared_ptr<WsConnection>> all;
    {
        std::lock_guard lock(impl_->mu);
        for (auto& [id, weak] : impl_->connections) {
            if (auto c = weak.lock()) {
                all.push_back(std::move(c));
            }
        }
    }
    for (auto& c : all) {
        c->Post([c] { c->Close("shutdown", "the server is shutting down; reconnect later"); });
    }
}

size_t WsGateway::connection_count() const {
    std::lock_guard lock(impl_->mu);
    return impl_->connections.size();
}

void WsGateway::Deliver(const MessageRecord& message, std::span<const uint64_t> connection_ids,
                        StatusCallback done) {
    DeliverLocal(message, connection_ids);
    if (done) {
        done(Status{});
    }
}

void WsGateway::DeliverLocal(const MessageRecord& message, std::span<const uint64_t> connection_ids) {
    std::vector<std::shared_ptr<WsConnection>> targets;
    targets.reserve(connection_ids.size());
    {
        std::lock_guard lock(impl_->mu);
        for (uint64_t id : connection_ids) {
            auto it = impl_->connections.find(id);
            if (it != impl_->connections.end()) {
                if (auto c = it->second.lock()) {
                    targets.push_back(std::move(c));
                }
            }
        }
    }
    if (targets.empty()) {
        return;
    }
    pb::ServerFrame frame;
    if (message.kind == MessageKind::kNotice) {
        ToNoticeProto(message, frame.mutable_notice());
    } else {
        ToProto(message, frame.mutable_message()->mutable_message());
    }
    std::shared_ptr<const std::string> binary, json;
    auto conv = std::make_shared<const std::string>(message.conversation_id);
    for (auto& c : targets) {
        const bool text = c->text_mode();
        auto& encoded = text ? json : binary;
        if (!encoded) {
            encoded = std::make_shared<const std::string>(EncodeServerFrame(frame, text));
        }
        c->Post([c, data = encoded, text, seq = message.seq, conv]() mutable {
            if (c->AlreadyPushed(*conv, seq)) {
                return;  // a redelivery from the bus: this connection has it
            }
            c->EnqueuePush(std::move(data), text);
        });
    }
}

void WsGateway::Disconnect(uint64_t connection_id, std::string reason, std::string message) {
    if (auto c = impl_->Find(connection_id)) {
        c->Post([c, reason = std::move(reason), message = std::move(message)] { c->Close(reason, message); });
    }
}

}  // namespace flare::gateway
