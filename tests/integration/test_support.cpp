#include "test_support.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include "auth/jwt.hpp"
#include "common/clock.hpp"

namespace flare::testing {

namespace {

std::chrono::milliseconds Left(std::chrono::steady_clock::time_point deadline) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
}

}  // namespace

TestServer::TestServer(std::function<void(app::Config&)> tweak) {
    dir_ = (std::filesystem::temp_directory_path() / ("flare-it-" + RandomHexId(6))).string();
    config_ = app::LoadConfig("", {});
    config_.gateway.port = 0;
    config_.gateway.listen_address = "127.0.0.1";
    config_.gateway.gateway_id = "gw-test";
    config_.gateway.region = "test-region";
    config_.core_gateway.listen_address = "127.0.0.1";
    config_.core_gateway.grpc_port = 0;
    config_.core_gateway.http_port = 0;
    config_.core_gateway.business_secret = kSecret;
    config_.gateway.token_secret = kSecret;
    config_.database_url = "sqlite://" + dir_ + "/flare.db";
    config_.storage_synchronous = "normal";
    config_.io_threads = 2;
    if (tweak) {
        tweak(config_);
    }
    Start();
}

TestServer::~TestServer() {
    Stop();
    std::filesystem::remove_all(dir_);
}

void TestServer::Start() {
    server_ = std::make_unique<app::EmbeddedServer>(config_);
    server_->Start();
    port_ = server_->gateway_port();
    grpc_port_ = server_->grpc_port();
    http_port_ = server_->http_port();
}

void TestServer::Stop() {
    if (server_) {
        server_->Stop();
        server_.reset();
    }
}

std::string TokenFor(const std::string& user, const std::string& tenant, int64_t ttl_s, const std::string& secret) {
    SystemClock clock;
    return MintToken(secret, user, tenant, clock.NowMs() / 1000 + ttl_s);
}

std::string BusinessToken(const std::string& tenant, int64_t ttl_s, const std::string& secret,
                          const std::string& subject) {
    SystemClock clock;
    return MintToken(secret, subject, tenant, clock.NowMs() / 1000 + ttl_s, "", kBusinessRole);
}

int ConnectLoopback(uint16_t port, int rcvbuf) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) {
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

std::string RawHttp(uint16_t port, const std::string& request) {
    int fd = ConnectLoopback(port);
    if (fd < 0) {
        return "connect failed";
    }
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)::write(fd, request.data(), request.size());
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) {
        out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
}

std::unique_ptr<TestClient> TestClient::LoginTenant(uint16_t port, const std::string& user, const std::string& device,
                                                    const std::string& tenant, const std::string& secret) {
    auto c = Open(port, "/");
    pb::ClientFrame f;
    f.mutable_auth()->set_token(TokenFor(user, tenant, 3600, secret));
    f.mutable_auth()->set_device_id(device);
    auto r = c->Request(f);
    EXPECT_TRUE(r && r->has_auth()) << (r ? r->DebugString() : "no answer");
    return c;
}

std::unique_ptr<TestClient> TestClient::Open(uint16_t port, const std::string& target, bool json) {
    auto c = std::make_unique<TestClient>();
    c->ws_.set_json(json);
    auto st = c->ws_.Connect("127.0.0.1", port, target);
    EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().message);
    return c;
}

std::unique_ptr<TestClient> TestClient::Login(uint16_t port, const std::string& user, const std::string& device,
                                              bool json) {
    auto c = Open(port, "/", json);
    pb::ClientFrame f;
    f.mutable_auth()->set_token(TokenFor(user));
    f.mutable_auth()->set_device_id(device);
    auto r = c->Request(f);
    EXPECT_TRUE(r && r->has_auth()) << (r ? r->DebugString() : "no answer");
    return c;
}

std::optional<client::ClientEvent> TestClient::NextEvent(std::chrono::milliseconds timeout) {
    auto e = ws_.Next(timeout);
    if (e && e->kind == client::ClientEvent::Kind::kClosed) {
        closed_ = true;
        close_code_ = e->close_code;
    }
    return e;
}

std::optional<pb::ServerFrame> TestClient::Request(pb::ClientFrame frame, std::chrono::milliseconds timeout) {
    if (frame.request_id().empty()) {
        frame.set_request_id("r" + std::to_string(next_rid_++));
    }
    const std::string rid = frame.request_id();
    ws_.Send(frame);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto left = Left(deadline);
        if (left.count() <= 0 || closed_) {
            return std::nullopt;
        }
        auto e = NextEvent(left);
        if (!e || e->kind != client::ClientEvent::Kind::kFrame) {
            continue;
        }
        if (e->frame.request_id() == rid) {
            return e->frame;
        }
        unsolicited_.push_back(std::move(e->frame));
    }
}

std::optional<pb::ServerFrame> TestClient::NextPush(std::chrono::milliseconds timeout) {
    if (!unsolicited_.empty()) {
        auto f = std::move(unsolicited_.front());
        unsolicited_.pop_front();
        return f;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto left = Left(deadline);
        if (left.count() <= 0 || closed_) {
            return std::nullopt;
        }
        auto e = NextEvent(left);
        if (e && e->kind == client::ClientEvent::Kind::kFrame) {
            return e->frame;
        }
    }
}

std::optional<uint16_t> TestClient::WaitClosed(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!closed_) {
        const auto left = Left(deadline);
        if (left.count() <= 0) {
            return std::nullopt;
        }
        auto e = NextEvent(left);
        if (e && e->kind == client::ClientEvent::Kind::kFrame) {
            unsolicited_.push_back(std::move(e->frame));
        }
    }
    return close_code_;
}

std::vector<pb::Message> TestClient::Messages(size_t n, std::chrono::milliseconds timeout) {
    std::vector<pb::Message> out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (out.size() < n) {
        const auto left = Left(deadline);
        if (left.count() <= 0) {
            break;
        }
        auto f = NextPush(left);
        if (!f) {
            break;
        }
        EXPECT_TRUE(f->has_message()) << "expected a message push, got " << f->DebugString();
        if (f->has_message()) {
            out.push_back(f->message().message());
        }
    }
    return out;
}

bool TestClient::Silent(std::chrono::milliseconds quiet) {
    if (!unsolicited_.empty()) {
        return false;
    }
    auto e = NextEvent(quiet);
    if (e && e->kind == client::ClientEvent::Kind::kFrame) {
        unsolicited_.push_back(std::move(e->frame));
        return false;
    }
    return !e.has_value();
}

std::optional<pb::ServerFrame> TestClient::Send(const std::string& conv, const std::string& client_msg_id,
                                                const std::string& text) {
    pb::ClientFrame f;
    f.mutable_send()->set_conversation_id(conv);
    f.mutable_send()->set_client_msg_id(client_msg_id);
    f.mutable_send()->set_text(text);
    return Request(f);
}

std::optional<pb::ServerFrame> TestClient::Join(const std::string& room) {
    pb::ClientFrame f;
    f.mutable_join_room()->set_room(room);
    return Request(f);
}

std::optional<pb::ServerFrame> TestClient::Ack(const std::string& conv, uint64_t seq) {
    pb::ClientFrame f;
    f.mutable_ack()->set_conversation_id(conv);
    f.mutable_ack()->set_seq(seq);
    return Request(f);
}

std::vector<pb::Message> TestClient::SyncAll(const std::string& conv, uint64_t after, uint32_t page) {
    std::vector<pb::Message> out;
    for (int guard = 0; guard < 10000; ++guard) {
        pb::ClientFrame f;
        f.mutable_sync_messages()->set_conversation_id(conv);
        f.mutable_sync_messages()->set_after_seq(after);
        f.mutable_sync_messages()->set_limit(page);
        auto r = Request(f);
        EXPECT_TRUE(r && r->has_sync_messages()) << (r ? r->DebugString() : "no answer");
        if (!r || !r->has_sync_messages()) {
            break;
        }
        for (const auto& m : r->sync_messages().messages()) {
            out.push_back(m);
            after = m.seq();
        }
        if (!r->sync_messages().has_more()) {
            break;
        }
    }
    return out;
}

std::optional<pb::ServerFrame> TestClient::SyncConversations(
    const std::vector<std::pair<std::string, uint64_t>>& known, bool include_all) {
    pb::ClientFrame f;
    auto* s = f.mutable_sync_conversations();
    for (const auto& [conv, seq] : known) {
        auto* k = s->add_known();
        k->set_conversation_id(conv);
        k->set_seq(seq);
    }
    s->set_include_all(include_all);
    return Request(f);
}

}  // namespace flare::testing
