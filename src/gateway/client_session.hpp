// The access gateway's per-connection protocol state machine: authentication, request dispatch to the
// domain services, responses. It knows nothing of sockets: a SessionHost writes and closes, a Poster
// runs completions on the connection's strand. Tests drive it directly.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "common/clock.hpp"
#include "domain/services.hpp"
#include "gateway/frame_codec.hpp"

namespace flare::gateway {

struct GatewayOptions {
    std::string gateway_id;  // empty: LoadConfig generates one
    std::string region;
    std::string listen_address = "0.0.0.0";
    uint16_t port = 60051;
    std::string token_secret = "insecure-secret";
    std::string default_tenant = "default";
    uint32_t max_frame_bytes = 64 * 1024;        // larger frames get a frame_too_large error
    uint32_t hard_max_frame_bytes = 1024 * 1024;  // larger frames close the connection (1009)
    uint32_t heartbeat_interval_ms = 25'000;
    uint32_t idle_timeout_ms = 75'000;
    uint32_t auth_timeout_ms = 10'000;
    uint32_t max_inflight_requests = 256;
    uint32_t max_queued_frames = 8192;             // outbound; beyond it the client is a slow consumer
    uint64_t max_queued_bytes = 4 * 1024 * 1024;
    uint32_t write_stall_timeout_ms = 10'000;      // a write that makes no progress this long: slow consumer
};

struct GatewayServices {
    ConversationApi& sessions;
    MessagingApi& orchestrator;
    PresenceRegistry& presence;
    DeliverySink& self;  // this gateway, to close a replaced device
    const Clock& clock;
    // Optional: told when a device of this gateway is registered in presence and when it leaves (the
    // gateway keeps the list to refresh the records' TTLs).
    std::function<void(const DeviceSession&)> on_registered = {};
    std::function<void(uint64_t connection_id)> on_unregistered = {};
};

class SessionHost {
public:
    virtual ~SessionHost() = default;
    virtual void Send(const pb::ServerFrame& frame) = 0;
    // Sends a Goodbye frame with the reason, then closes.
    virtual void Close(const std::string& reason, const std::string& message) = 0;
    // The client unpacks Batch frames: queued frames may be written several to a message.
    virtual void EnableBatching() {}
};

using Poster = std::function<void(std::function<void()>)>;

class ClientSession : public std::enable_shared_from_this<ClientSession> {
public:
    ClientSession(const GatewayOptions& options, GatewayServices services, Poster post, SessionHost* host,
                  uint64_t connection_id, std::string platform_hint);

    // Call once the WebSocket is open; a token from the upgrade request authenticates right away.
    void Start(const std::string& upgrade_token);
    void OnFrame(pb::ClientFrame frame);
    void OnBadFrame(const Error& error);
    // The connection is gone: presence forgets this device; late completions are dropped.
    void OnClosed();

    bool authenticated() const { return state_ == State::kAuthenticated; }
    const Principal& principal() const { return principal_; }

private:
    enum class State { kAwaitingAuth, kAuthenticating, kAuthenticated, kClosed };

    void Authenticate(const std::string& request_id, const std::string& token, const std::string& device_id,
                      const std::string& platform, bool accept_batches);
    void Reply(pb::ServerFrame frame);
    void ReplyError(const std::string& request_id, const Error& error);
    // Runs `fn` on the strand if the session is still open; keeps the session alive until then.
    template <typename Fn>
    auto OnStrand(Fn fn);

    void Dispatch(pb::ClientFrame frame);
    void EndBarrier();
    void Pump();
    void HandleSend(const std::string& rid, const pb::SendRequest& req);
    void HandleAck(const std::string& rid, const pb::AckRequest& req);
    void HandleSyncMessages(const std::string& rid, const pb::SyncMessagesRequest& req);
    void HandleSyncConversations(const std::string& rid, const pb::SyncConversationsRequest& req);
    void HandleJoin(const std::string& rid, const pb::JoinRoomRequest& req);
    void HandleLeave(const std::string& rid, const pb::LeaveRoomRequest& req);
    void SendAndReply(const std::string& rid, SendCommand cmd, bool op, std::string sent_text = {});
    void HandleGroup(const std::string& rid, const pb::GroupRequest& req);
    void HandleMessageOp(const std::string& rid, const pb::MessageOpRequest& req);
    UserStateCommand UserCommand(UserOp op, const std::string& conversation_id) const;
    void HandleRead(const std::string& rid, const pb::ReadRequest& req);
    void HandleDeleteForMe(const std::string& rid, const pb::DeleteForMeRequest& req);
    void HandleSettings(const std::string& rid, const pb::UpdateSettingsRequest& req);
    void HandleTyping(const std::string& rid, const pb::TypingRequest& req);
    // True when a typing frame repeats what this connection told the conversation less than a
    // second ago (it is answered, not forwarded); otherwise remembers it as told now.
    bool TypingRepeat(const std::string& conversation_id, bool active);
    void ForgetTyping(const std::string& conversation_id);
    void HandleList(const std::string& rid, const pb::ListConversationsRequest& req);
    void HandleGetMessage(const std::string& rid, const pb::GetMessageRequest& req);

    const GatewayOptions& options_;
    GatewayServices services_;
    Poster post_;
    SessionHost* host_;
    uint64_t connection_id_;
    std::string platform_;
    State state_ = State::kAwaitingAuth;
    Principal principal_;
    uint32_t inflight_ = 0;
    // While a join or leave is being applied, later requests wait, so that they see its effect.
    bool barrier_ = false;
    std::deque<pb::ClientFrame> deferred_;
    // When this connection last forwarded a start and a stop of typing, for a few conversations,
    // and how many it forwarded in the current second (allocated on its first typing frame: most
    // connections never type).
    struct TypingSent {
        std::string conversation_id;
        int64_t start_ms = 0, stop_ms = 0;
    };
    struct TypingState {
        std::array<TypingSent, 4> recent;
        int64_t window_start_ms = 0;
        uint32_t forwarded = 0;
    };
    std::unique_ptr<TypingState> typing_sent_;
};

// Domain -> protocol conversions shared by the gateway's push path.
void ToProto(const MessageRecord& m, pb::Message* out);
// A kNotice record as the Notice frame clients get.
void ToNoticeProto(const MessageRecord& m, pb::Notice* out);

}  // namespace flare::gateway
