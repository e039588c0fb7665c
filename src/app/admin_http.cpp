#include "app/admin_http.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>

#include "net/listen.hpp"

namespace flare::app {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct AdminServer::Impl {
    std::string role;
    Metrics& metrics;
    std::atomic<bool>* ready;
    asio::io_context io;
    tcp::acceptor acceptor{io};
    std::thread thread;

    Impl(std::string r, Metrics& m, std::atomic<bool>* ready) : role(std::move(r)), metrics(m), ready(ready) {}

    void Accept() {
        acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
            if (ec) {
                return;  // closed
            }
            Serve(std::make_shared<beast::tcp_stream>(std::move(socket)));
            Accept();
        });
    }

    void Serve(std::shared_ptr<beast::tcp_stream> stream) {
        auto buffer = std::make_shared<beast::flat_buffer>();
        auto req = std::make_shared<http::request<http::string_body>>();
        stream->expires_after(std::chrono::seconds(5));
        http::async_read(*stream, *buffer, *req, [this, stream, buffer, req](beast::error_code ec, size_t) {
            if (ec) {
                return;
            }
            auto res = std::make_shared<http::response<http::string_body>>(Answer(*req));
            res->keep_alive(false);
            res->prepare_payload();
            http::async_write(*stream, *res, [stream, res](beast::error_code, size_t) {
                beast::error_code ignored;
                stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
            });
        });
    }

    http::response<http::string_body> Answer(const http::request<http::string_body>& req) {
        http::response<http::string_body> res;
        res.version(req.version());
        res.set(http::field::server, "flare-admin");
        res.set(http::field::content_type, "text/plain; charset=utf-8");
        const std::string target(req.target());
        if (req.method() != http::verb::get && req.method() != http::verb::head) {
            res.result(http::status::method_not_allowed);
            res.body() = "only GET\n";
        } else if (target == "/healthz") {
            res.result(http::status::ok);
            res.body() = "ok " + role + "\n";
        } else if (target == "/readyz") {
            const bool r = ready->load();
            res.result(r ? http::status::ok : http::status::service_unavailable);
            res.body() = (r ? "ready " : "not ready ") + role + "\n";
        } else if (target == "/metrics") {
            res.result(http::status::ok);
            res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
            res.body() = metrics.Render();
        } else {
            res.result(http::status::not_found);
            res.body() = "not found; try /healthz, /readyz or /metrics\n";
        }
        return res;
    }
};

AdminServer::AdminServer(std::string role, Metrics& metrics)
    : impl_(std::make_unique<Impl>(std::move(role), metrics, &ready_)) {}

AdminServer::~AdminServer() { Stop(); }

Status AdminServer::Start(const std::string& address, uint16_t port) {
    if (auto st = net::BindAndListen(impl_->acceptor, address, port, "admin"); !st) {
        return st;
    }
    impl_->Accept();
    impl_->thread = std::thread([io = &impl_->io] { io->run(); });
    return {};
}

uint16_t AdminServer::port() const { return net::BoundPort(impl_->acceptor); }

void AdminServer::Stop() {
    if (impl_->thread.joinable()) {
        asio::post(impl_->io, [this] {
            beast::error_code ec;
            impl_->acceptor.close(ec);
        });
        impl_->io.stop();
        impl_->thread.join();
    }
}

}  // namespace flare::app
