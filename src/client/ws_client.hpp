// A WebSocket client of the Flare client protocol, for chatroom_client and the tests.
// One connection, one I/O thread; frames arrive as events, either to a handler or to a queue read
// with Next(); Batch frames are unpacked into their frames. Beast stays inside ws_client.cpp.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/errc.hpp"
#include "flare/client/v1/client.pb.h"

namespace flare::client {

namespace pb = ::flare::client::v1;

struct ClientEvent {
    enum class Kind { kFrame, kUndecodable, kClosed };
    Kind kind = Kind::kFrame;
    pb::ServerFrame frame;     // kFrame
    std::string detail;        // kUndecodable: decoder message; kClosed: close reason / error
    uint16_t close_code = 0;   // kClosed: WebSocket close code when the server sent one
};

class WsClient {
public:
    using Handler = std::function<void(ClientEvent)>;
    WsClient();
    ~WsClient();
    WsClient(const WsClient&) = delete;
    WsClient& operator=(const WsClient&) = delete;

    // TCP connect and WebSocket handshake on `target` (e.g. "/?token=..."). Without a handler, events
    // are queued for Next(). Errors: kUnavailable with the cause.
    Status Connect(const std::string& host, uint16_t port, const std::string& target = "/",
                   std::chrono::milliseconds timeout = std::chrono::seconds(5), Handler handler = {});
    // Frames are sent as JSON text messages when true, as binary protobuf otherwise.
    void set_json(bool json) { json_ = json; }
    void Send(const pb::ClientFrame& frame);
    void SendRaw(std::string payload, bool text);
    std::optional<ClientEvent> Next(std::chrono::milliseconds timeout);
    // Closes gracefully (waits for the close handshake up to 2 s).
    void Close();
    bool open() const;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
    bool json_ = false;
};

// "host:port", "ws://host:port" or "host" (port 60051) -> host and port.
Result<std::pair<std::string, uint16_t>> ParseHostPort(const std::string& s, uint16_t default_port = 60051);

}  // namespace flare::client
