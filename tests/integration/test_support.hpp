// Integration-test support: the embedded server in-process on port 0 with its own SQLite file, and
// a WebSocket test client that matches responses to requests by request id.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "app/embedded_server.hpp"
#include "client/ws_client.hpp"

namespace flare::testing {

namespace pb = ::flare::client::v1;
using namespace std::chrono_literals;

constexpr const char* kSecret = "test-secret";

class TestServer {
public:
    explicit TestServer(std::function<void(app::Config&)> tweak = {});
    ~TestServer();
    void Start();
    void Stop();
    void Restart() {
        Stop();
        Start();
    }
    uint16_t port() const { return port_; }
    uint16_t grpc_port() const { return grpc_port_; }
    uint16_t http_port() const { return http_port_; }
    app::Config& config() { return config_; }
    app::EmbeddedServer& server() { return *server_; }

private:
    std::string dir_;
    app::Config config_;
    std::unique_ptr<app::EmbeddedServer> server_;
    uint16_t port_ = 0, grpc_port_ = 0, http_port_ = 0;
};

std::string TokenFor(const std::string& user, const std::string& tenant = "default", int64_t ttl_s = 3600,
                     const std::string& secret = kSecret);
// A business token (role "business").
std::string BusinessToken(const std::string& tenant = "default", int64_t ttl_s = 3600,
                          const std::string& secret = kSecret, const std::string& subject = "crm");

// A TCP connection to 127.0.0.1:port (-1 on failure); `rcvbuf` > 0 sets SO_RCVBUF before connecting.
int ConnectLoopback(uint16_t port, int rcvbuf = 0);
// Sends raw bytes to 127.0.0.1:port and returns everything read until the peer closes (5 s at most).
std::string RawHttp(uint16_t port, const std::string& request);

class TestClient {
public:
    // Opens a WebSocket to the server (no auth yet). Fails the test on error.
    static std::unique_ptr<TestClient> Open(uint16_t port, const std::string& target = "/", bool json = false);
    // Opens and authenticates; the returned client is ready for requests.
    static std::unique_ptr<TestClient> Login(uint16_t port, const std::string& user, const std::string& device,
                                             bool json = false);

    // Sends the frame (a request id is assigned when empty) and waits for the frame answering it.
    // Other frames arriving meanwhile are kept for NextPush().
    std::optional<pb::ServerFrame> Request(pb::ClientFrame frame, std::chrono::milliseconds timeout = 5s);
    void SendFrame(const pb::ClientFrame& frame) { ws_.Send(frame); }
    void SendRaw(std::string payload, bool text) { ws_.SendRaw(std::move(payload), text); }

    // Next frame that answers no request (pushes, goodbye, connection-level errors).
    std::optional<pb::ServerFrame> NextPush(std::chrono::milliseconds timeout = 5s);
    // Waits for the server to close the connection; returns the close code (0 when none was sent).
    std::optional<uint16_t> WaitClosed(std::chrono::milliseconds timeout = 5s);
    // Collects `n` pushed messages (any other frame fails the test).
    std::vector<pb::Message> Messages(size_t n, std::chrono::milliseconds timeout = 5s);
    // True when nothing at all arrives within `quiet`.
    bool Silent(std::chrono::milliseconds quiet = 300ms);

    // Convenience requests.
    std::optional<pb::ServerFrame> Send(const std::string& conv, const std::string& client_msg_id,
                                        const std::string& text);
    std::optional<pb::ServerFrame> Join(const std::string& room);
    std::optional<pb::ServerFrame> Ack(const std::string& conv, uint64_t seq);
    // All messages after `after`, paging with `page` per request.
    std::vector<pb::Message> SyncAll(const std::string& conv, uint64_t after, uint32_t page = 100);
    // Logs in as `user` on `device` with a token of `tenant`.
    static std::unique_ptr<TestClient> LoginTenant(uint16_t port, const std::string& user, const std::string& device,
                                                   const std::string& tenant, const std::string& secret = kSecret);
    std::optional<pb::ServerFrame> SyncConversations(const std::vector<std::pair<std::string, uint64_t>>& known = {},
                                                     bool include_all = false);

    client::WsClient& ws() { return ws_; }
    bool closed() const { return closed_; }
    std::optional<uint16_t> close_code() const { return close_code_; }

private:
    std::optional<client::ClientEvent> NextEvent(std::chrono::milliseconds timeout);

    client::WsClient ws_;
    std::deque<pb::ServerFrame> unsolicited_;
    uint64_t next_rid_ = 1;
    bool closed_ = false;
    std::optional<uint16_t> close_code_;
};

}  // namespace flare::testing
