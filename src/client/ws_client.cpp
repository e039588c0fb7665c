#include "client/ws_client.hpp"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "gateway/frame_codec.hpp"

namespace flare::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

struct WsClient::Impl : std::enable_shared_from_this<WsClient::Impl> {
    Impl() : work(io.get_executor()), ws(io) {}

    void Emit(ClientEvent e) {
        if (handler) {
            handler(std::move(e));
            return;
        }
        {
            std::lock_guard lock(mu);
            events.push_back(std::move(e));
        }
        cv.notify_all();
    }

    void ReadLoop() {
        ws.async_read(buffer, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) {
                ClientEvent e;
                e.kind = ClientEvent::Kind::kClosed;
                auto reason = self->ws.reason();
                e.close_code = static_cast<uint16_t>(reason.code);
                e.detail = ec == websocket::error::closed ? std::string(reason.reason.c_str()) : ec.message();
                self->is_open = false;
                self->Emit(std::move(e));
                return;
            }
            auto data = self->buffer.cdata();
            auto frame = gateway::DecodeServerFrame(
                std::string_view(static_cast<const char*>(data.data()), data.size()), self->ws.got_text());
            self->buffer.consume(self->buffer.size());
            if (frame && frame->has_batch()) {
                for (auto& inner : *frame->mutable_batch()->mutable_frames()) {
                    ClientEvent e;
                    e.frame = std::move(inner);
                    self->Emit(std::move(e));
                }
                self->ReadLoop();
                return;
            }
            ClientEvent e;
            if (frame) {
                e.frame = std::move(frame.value());
            } else {
                e.kind = ClientEvent::Kind::kUndecodable;
                e.detail = frame.error().message;
            }
            self->Emit(std::move(e));
            self->ReadLoop();
        });
    }

    void Write(std::shared_ptr<std::string> data, bool text) {
        out.emplace_back(std::move(data), text);
        if (out.size() == 1) {
            DoWrite();
        }
    }
    void DoWrite() {
        ws.text(out.front().second);
        ws.async_write(asio::buffer(*out.front().first), [self = shared_from_this()](beast::error_code ec, size_t) {
            self->out.pop_front();
            if (!ec && !self->out.empty()) {
                self->DoWrite();
            }
        });
    }

    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work;
    websocket::stream<tcp::socket> ws;
    beast::flat_buffer buffer;
    std::deque<std::pair<std::shared_ptr<std::string>, bool>> out;
    Handler handler;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<ClientEvent> events;
    std::atomic<bool> is_open{false};
    std::thread thread;
};

WsClient::WsClient() : impl_(std::make_shared<Impl>()) {
    impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

WsClient::~WsClient() {
    Close();
    // Cancel what is pending and let the handlers run out: they hold the Impl, and an io_context
    // stopped with handlers queued would keep it (and them) alive forever.
    asio::post(impl_->io, [impl = impl_.get()] {
        beast::error_code ignored;
        impl->ws.next_layer().close(ignored);
    });
    impl_->work.reset();
    impl_->thread.join();
}

Status WsClient::Connect(const std::string& host, uint16_t port, const std::string& target,
                         std::chrono::milliseconds timeout, Handler handler) {
    impl_->handler = std::move(handler);
    auto promise = std::make_shared<std::promise<beast::error_code>>();
    auto future = promise->get_future();
    auto impl = impl_;
    asio::post(impl->io, [impl, promise, host, port, target] {
        beast::error_code ec;
        tcp::resolver resolver(impl->io);
        auto results = resolver.resolve(host, std::to_string(port), ec);
        if (ec) {
            return promise->set_value(ec);
        }
        asio::async_connect(
            impl->ws.next_layer(), results,
            [impl, promise, host, port, target](beast::error_code ec, const tcp::endpoint&) {
                if (ec) {
                    return promise->set_value(ec);
                }
                impl->ws.next_layer().set_option(tcp::no_delay(true));
                impl->ws.read_message_max(64 << 20);
                impl->ws.async_handshake(host + ":" + std::to_string(port), target,
                                         [impl, promise](beast::error_code ec) {
                                             if (!ec) {
                                                 impl->is_open = true;
                                                 impl->ReadLoop();
                                             }
                                             promise->set_value(ec);
                                         });
            });
    });
    if (future.wait_for(timeout) != std::future_status::ready) {
        asio::post(impl->io, [impl] {
            beast::error_code ignored;
            impl->ws.next_layer().close(ignored);
        });
        future.wait();
        return MakeError(Errc::kUnavailable, "connect_timeout",
                         "no WebSocket connection to " + host + ":" + std::to_string(port) + " within " +
                             std::to_string(timeout.count()) + " ms");
    }
    if (auto ec = future.get()) {
        return MakeError(Errc::kUnavailable, "connect_failed",
                         "cannot connect to ws://" + host + ":" + std::to_string(port) + ": " + ec.message());
    }
    return {};
}

void WsClient::Send(const pb::ClientFrame& frame) { SendRaw(gateway::EncodeClientFrame(frame, json_), json_); }

void WsClient::SendRaw(std::string payload, bool text) {
    auto data = std::make_shared<std::string>(std::move(payload));
    asio::post(impl_->io, [impl = impl_, data, text] { impl->Write(data, text); });
}

std::optional<ClientEvent> WsClient::Next(std::chrono::milliseconds timeout) {
    std::unique_lock lock(impl_->mu);
    if (!impl_->cv.wait_for(lock, timeout, [&] { return !impl_->events.empty(); })) {
        return std::nullopt;
    }
    ClientEvent e = std::move(impl_->events.front());
    impl_->events.pop_front();
    return e;
}

void WsClient::Close() {
    if (!impl_->is_open.exchange(false)) {
        return;
    }
    auto promise = std::make_shared<std::promise<void>>();
    auto future = promise->get_future();
    asio::post(impl_->io, [impl = impl_, promise] {
        impl->ws.async_close(websocket::close_code::normal, [promise](beast::error_code) { promise->set_value(); });
    });
    if (future.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
        asio::post(impl_->io, [impl = impl_] {
            beast::error_code ignored;
            impl->ws.next_layer().close(ignored);
        });
    }
}

bool WsClient::open() const { return impl_->is_open; }

Result<std::pair<std::string, uint16_t>> ParseHostPort(const std::string& input, uint16_t default_port) {
    std::string s = input;
    for (const char* prefix : {"ws://", "http://"}) {
        if (s.starts_with(prefix)) {
            s = s.substr(std::strlen(prefix));
        }
    }
    if (auto slash = s.find('/'); slash != std::string::npos) {
        s = s.substr(0, slash);
    }
    const auto colon = s.rfind(':');
    if (colon == std::string::npos) {
        if (s.empty()) {
            return MakeError(Errc::kInvalidArgument, "bad_address", "empty host");
        }
        return std::pair{s, default_port};
    }
    const std::string port = s.substr(colon + 1);
    char* end = nullptr;
    long p = std::strtol(port.c_str(), &end, 10);
    if (port.empty() || *end != '\0' || p <= 0 || p > 65535 || colon == 0) {
        return MakeError(Errc::kInvalidArgument, "bad_address", "'" + input + "' is not host:port");
    }
    return std::pair{s.substr(0, colon), static_cast<uint16_t>(p)};
}

}  // namespace flare::client
