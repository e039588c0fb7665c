// The HTTP/JSON mirror of the business API: POST /api/v1/<Method> with the protobuf JSON mapping of
// the request, the same `authorization: Bearer` header; answers the JSON mapping of the response, or
// {"code","reason","message"} with the HTTP status matching the gRPC code.
#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>

#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <mutex>
#include <optional>
#include <unordered_set>

#include "core_gateway/servers.hpp"
#include "net/listen.hpp"

namespace flare::core_gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

struct Reply {
    http::status status = http::status::ok;
    std::string body;
};

// The one mapping of Errc to HTTP statuses (as gRPC's HTTP mapping does).
http::status ToHttp(Errc code) {
    switch (code) {
        case Errc::kInvalidArgument:
        case Errc::kFailedPrecondition: return http::status::bad_request;
        case Errc::kUnauthenticated: return http::status::unauthorized;
        case Errc::kPermissionDenied: return http::status::forbidden;
        case Errc::kNotFound: return http::status::not_found;
        case Errc::kAlreadyExists: return http::status::conflict;
        case Errc::kResourceExhausted: return http::status::too_many_requests;
        case Errc::kUnavailable: return http::status::service_unavailable;
        case Errc::kDeadlineExceeded: return http::status::gateway_timeout;
        default: return http::status::internal_server_error;
    }
}

std::string JsonEscape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    return out;
}

Reply ErrorReply(const Error& e) {
    std::string code(ErrcName(e.code));
    return Reply{ToHttp(e.code), "{\"code\":\"" + code + "\",\"reason\":\"" + JsonEscape(e.reason) +
                                     "\",\"message\":\"" + JsonEscape(e.message) + "\"}\n"};
}

// The JSON parser's messages end with a caret diagram; the first line is what matters.
std::string FirstLine(std::string s) {
    s = s.substr(0, s.find('\n'));
    while (!s.empty() && (s.front() == ':' || s.front() == ' ')) {
        s.erase(s.begin());
    }
    return s;
}

template <typename Req, typename Resp>
void Dispatch(BusinessApi& api, void (BusinessApi::*method)(const Caller&, const Req&, Callback<Resp>),
              const Caller& caller, const std::string& body, std::function<void(Reply)> reply) {
    Req req;
    google::protobuf::util::JsonParseOptions parse;
    auto st = google::protobuf::util::JsonStringToMessage(body.empty() ? "{}" : body, &req, parse);
    if (!st.ok()) {
        return reply(ErrorReply(MakeError(Errc::kInvalidArgument, "malformed_json",
                                          "request body is not a valid " + std::string(Req::descriptor()->name()) +
                                              " in JSON: " + FirstLine(std::string(st.message())))));
    }
    (api.*method)(caller, req, [reply = std::move(reply)](Result<Resp> r) {
        if (!r) {
            return reply(ErrorReply(r.error()));
        }
        google::protobuf::util::JsonPrintOptions print;
        print.always_print_primitive_fields = true;
        print.preserve_proto_field_names = true;
        std::string out;
        (void)google::protobuf::util::MessageToJsonString(*r, &out, print);
        reply(Reply{http::status::ok, out + "\n"});
    });
}

}  // namespace

struct HttpApiServer::Impl : std::enable_shared_from_this<HttpApiServer::Impl> {
    Impl(asio::io_context& io, BusinessApi& api) : io(io), api(api), acceptor(io) {}

    void Accept() {
        acceptor.async_accept(asio::make_strand(io), [self = shared_from_this()](beast::error_code ec, tcp::socket s) {
            if (ec) {
                if (ec != asio::error::operation_aborted && !self->stopping) {
                    spdlog::warn("core-gateway http: accept failed: {}", ec.message());
                    self->Accept();
                }
                return;
            }
            auto ex = s.get_executor();
            asio::co_spawn(ex, Session(self, beast::tcp_stream(std::move(s))), [](std::exception_ptr e) {
                if (e) {
                    try {
                        std::rethrow_exception(e);
                    } catch (const std::exception& ex) {
                        spdlog::error("core-gateway http: session ended with an exception: {}", ex.what());
                    }
                }
            });
            self->Accept();
        });
    }

    void Route(const http::request<http::string_body>& req, std::function<void(Reply)> reply) {
        const std::string_view target(req.target().data(), req.target().size());
        if (req.method() == http::verb::get && (target == "/healthz" || target == "/readyz")) {
            return reply(Reply{http::status::ok, "ok\n"});
        }
        if (req.method() == http::verb::get && target == "/metrics") {
            // Operator data (hook names, tenants): a business token is required, as for the API.
            auto caller = api.Authenticate(req[http::field::authorization]);
            if (!caller) {
                return reply(ErrorReply(caller.error()));
            }
            return reply(Reply{http::status::ok, api.RenderMetrics(*caller)});
        }
        constexpr std::string_view kPrefix = "/api/v1/";
        if (!target.starts_with(kPrefix)) {
            return reply(ErrorReply(MakeError(Errc::kNotFound, "no_such_path",
                                              "no such path; the business API is POST /api/v1/<Method>")));
        }
        if (req.method() != http::verb::post) {
            Reply r = ErrorReply(MakeError(Errc::kInvalidArgument, "method_not_allowed", "use POST with a JSON body"));
            r.status = http::status::method_not_allowed;
            return reply(std::move(r));
        }
        const std::string method(target.substr(kPrefix.size()));
        auto caller = api.Authenticate(req[http::field::authorization]);
        if (!caller) {
            return reply(ErrorReply(caller.error()));
        }
        const std::string& body = req.body();
        if (method == "PushMessage") {
            return Dispatch(api, &BusinessApi::PushMessage, *caller, body, std::move(reply));
        }
        if (method == "SendMessage") {
            return Dispatch(api, &BusinessApi::SendMessage, *caller, body, std::move(reply));
        }
        if (method == "QueryUserStatus") {
            return Dispatch(api, &BusinessApi::QueryUserStatus, *caller, body, std::move(reply));
        }
        if (method == "KickUser") {
            return Dispatch(api, &BusinessApi::KickUser, *caller, body, std::move(reply));
        }
        if (method == "GetHistory") {
            return Dispatch(api, &BusinessApi::GetHistory, *caller, body, std::move(reply));
        }
        if (method == "CreateGroup") {
            return Dispatch(api, &BusinessApi::CreateGroup, *caller, body, std::move(reply));
        }
        if (method == "AddGroupMembers") {
            return Dispatch(api, &BusinessApi::AddGroupMembers, *caller, body, std::move(reply));
        }
        if (method == "RemoveGroupMembers") {
            return Dispatch(api, &BusinessApi::RemoveGroupMembers, *caller, body, std::move(reply));
        }
        if (method == "ListConversations") {
            return Dispatch(api, &BusinessApi::ListConversations, *caller, body, std::move(reply));
        }
        if (method == "PutHook") {
            return Dispatch(api, &BusinessApi::PutHook, *caller, body, std::move(reply));
        }
        if (method == "DeleteHook") {
            return Dispatch(api, &BusinessApi::DeleteHook, *caller, body, std::move(reply));
        }
        if (method == "ListHooks") {
            return Dispatch(api, &BusinessApi::ListHooks, *caller, body, std::move(reply));
        }
        reply(ErrorReply(MakeError(Errc::kNotFound, "no_such_method",
                                   "no method '" + Utf8Prefix(method, 60) +
                                       "'; methods: PushMessage, SendMessage, QueryUserStatus, KickUser, GetHistory, "
                                       "CreateGroup, AddGroupMembers, RemoveGroupMembers, ListConversations, PutHook, "
                                       "DeleteHook, ListHooks")));
    }

    static asio::awaitable<void> Session(std::shared_ptr<Impl> self, beast::tcp_stream stream) {
        beast::flat_buffer buffer;
        for (;;) {
            http::request_parser<http::string_body> parser;
            parser.header_limit(16 * 1024);
            parser.body_limit(1024 * 1024);
            stream.expires_after(std::chrono::seconds(30));
            auto [ec, n] = co_await http::async_read(stream, buffer, parser, kTuple);
            if (ec) {
                if (ec == asio::error::eof || ec == beast::error::timeout || ec == asio::error::connection_reset) {
                    break;
                }
                // Anything else is a request we cannot read: say so before closing.
                const bool too_large = ec == http::error::body_limit;
                http::response<http::string_body> res{
                    too_large ? http::status::payload_too_large
                              : (ec == http::error::header_limit ? http::status::request_header_fields_too_large
                                                                 : http::status::bad_request),
                    11};
                res.body() = too_large ? "{\"code\":\"INVALID_ARGUMENT\",\"reason\":\"body_too_large\","
                                         "\"message\":\"request body above 1 MiB\"}\n"
                                       : "{\"code\":\"INVALID_ARGUMENT\",\"reason\":\"malformed_http\","
                                         "\"message\":\"" + JsonEscape(ec.message()) + "\"}\n";
                res.set(http::field::content_type, "application/json");
                res.keep_alive(false);
                res.prepare_payload();
                co_await http::async_write(stream, res, kTuple);
                break;
            }
            auto req = parser.release();
            // The API answers from other threads: park on a timer until the answer is posted back here.
            auto ex = co_await asio::this_coro::executor;
            auto wake = std::make_shared<asio::steady_timer>(ex, asio::steady_timer::time_point::max());
            auto answer = std::make_shared<std::optional<Reply>>();
            self->Route(req, [answer, ex, wake](Reply r) {
                asio::post(ex, [answer, wake, r = std::move(r)]() mutable {
                    *answer = std::move(r);
                    wake->cancel();
                });
            });
            co_await wake->async_wait(kTuple);
            http::response<http::string_body> res{(*answer)->status, req.version()};
            res.set(http::field::server, "flare-im-core");
            res.set(http::field::content_type,
                    (*answer)->body.starts_with("{") ? "application/json" : "text/plain");
            res.keep_alive(req.keep_alive());
            res.body() = std::move((*answer)->body);
            res.prepare_payload();
            auto [wec, wn] = co_await http::async_write(stream, res, kTuple);
            if (wec || !res.keep_alive()) {
                break;
            }
        }
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    }

    asio::io_context& io;
    BusinessApi& api;
    tcp::acceptor acceptor;
    bool stopping = false;
};

HttpApiServer::HttpApiServer(asio::io_context& io, BusinessApi& api) : impl_(std::make_shared<Impl>(io, api)) {}
HttpApiServer::~HttpApiServer() = default;

Status HttpApiServer::Listen(const std::string& address, uint16_t port) {
    return net::BindAndListen(impl_->acceptor, address, port, "business HTTP API (core_gateway.http_port)");
}

uint16_t HttpApiServer::port() const { return net::BoundPort(impl_->acceptor); }

void HttpApiServer::Start() { impl_->Accept(); }

void HttpApiServer::Stop() {
    asio::post(impl_->acceptor.get_executor(), [impl = impl_] {
        impl->stopping = true;
        beast::error_code ignored;
        impl->acceptor.close(ignored);
    });
}

}  // namespace flare::core_gateway
