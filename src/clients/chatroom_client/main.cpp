// chatroom_client: a terminal (and scriptable) chat client of Flare IM Core.
//   chatroom_client USER [--room NAME | --to USER] [options]
// Reads lines from stdin and sends each; prints every received message as one line. Reconnects by
// itself and catches up by seq, so it never shows a gap, a duplicate or a message out of order.
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <algorithm>
#include <ctime>
#include <deque>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "auth/jwt.hpp"
#include "client/ws_client.hpp"
#include "common/clock.hpp"
#include "domain/types.hpp"

namespace {

using flare::client::ClientEvent;
using flare::client::WsClient;
namespace pb = flare::client::pb;
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage = R"(usage: chatroom_client USER [--room NAME | --to USER] [options]
  --room NAME     join chatroom NAME (default: lobby)
  --to USER       talk one-to-one with USER instead of a room
  --device ID     device id (default: a new one per run)
  --history N     show the last N messages when starting (default 10)
  --linger SECS   after the end of input, keep receiving for SECS seconds (default 0)
  --json          speak the JSON text encoding instead of binary protobuf
  --quiet         no status lines on stderr
environment: NEGOTIATION_HOST (default localhost:60051), TOKEN (use this token), TOKEN_SECRET
(default insecure-secret) and TENANT_ID (default default) to mint one.
Lines read from stdin are sent; at the end of input the client waits until every line is
acknowledged and exits 0 (1 if a send failed, or if no gateway could be reached for 30 s after
the end of input). Messages of the user's other conversations are shown with the conversation
id after the time, e.g. "[12:00:01] [room:lobby] user2: hi".
)";

struct Event {
    enum class Kind { kServer, kLine, kEof };
    Kind kind;
    int generation = 0;
    ClientEvent server;
    std::string line;
};

class EventQueue {
public:
    void Push(Event e) {
        {
            std::lock_guard lock(mu_);
            q_.push_back(std::move(e));
        }
        cv_.notify_one();
    }
    std::optional<Event> Pop(Clock::time_point deadline) {
        std::unique_lock lock(mu_);
        if (!cv_.wait_until(lock, deadline, [&] { return !q_.empty(); })) {
            return std::nullopt;
        }
        Event e = std::move(q_.front());
        q_.pop_front();
        return e;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Event> q_;
};

std::string Env(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v && *v ? v : fallback;
}

struct Options {
    std::string user, room = "lobby", to, device, host = "localhost";
    uint16_t port = 60051;
    int history = 10;
    int linger_s = 0;
    bool json = false, quiet = false;
};

class Chat {
    // Lines not yet acknowledged, in the order typed. Only the first is ever in flight: the next is sent
    // once it is acknowledged, so the messages are stored in the order typed even when a send has to be
    // retried (same client_msg_id) after an outage.
    struct Pending {
        std::string id;
        std::string text;
    };

public:
    explicit Chat(Options o) : o_(std::move(o)) {
        conversation_ = o_.to.empty() ? flare::RoomConversationId(o_.room) : flare::DirectConversationId(o_.user, o_.to);
        tracks_[conversation_];
        tracks_[flare::SystemConversationId(o_.user)];
        msg_prefix_ = "cli-" + flare::RandomHexId(6) + "-";
    }

    int Run() {
        std::thread([this] {
            std::string line;
            while (std::getline(std::cin, line)) {
                if (!line.empty() && line.back() == '\r') {
                    line.pop_back();
                }
                if (!line.empty()) {
                    queue_.Push(Event{Event::Kind::kLine, 0, {}, line});
                }
            }
            queue_.Push(Event{Event::Kind::kEof});
        }).detach();
        Connect();
        for (;;) {
            auto now = Clock::now();
            if (exit_code_) {
                return *exit_code_;
            }
            if (!client_ && now >= reconnect_at_) {
                Connect();
                continue;
            }
            if (ready_ && now >= next_ping_) {
                Ping();
            }
            if (ready_ && retry_at_ && now >= *retry_at_) {
                retry_at_.reset();
                SendNext();  // same client_msg_id: stored once however often it is sent
            }
            if (eof_ && ready_ && pending_.empty() && !Syncing()) {
                if (!linger_until_) {
                    linger_until_ = now + std::chrono::seconds(o_.linger_s);
                }
                if (now >= *linger_until_) {
                    Finish();
                    return failed_sends_ > 0 ? 1 : 0;
                }
            }
            if (eof_ && !client_ && now - disconnected_since_ > std::chrono::seconds(30)) {
                Status("giving up: the gateway has been unreachable for 30 s");
                return 1;
            }
            auto deadline = now + std::chrono::milliseconds(200);
            if (auto e = queue_.Pop(deadline)) {
                Handle(std::move(*e));
                FlushAck();
            }
        }
    }

private:
    void Status(const std::string& s) {
        if (!o_.quiet) {
            std::cerr << "* " << s << std::endl;
        }
    }

    std::string Token() {
        std::string token = Env("TOKEN", "");
        if (!token.empty()) {
            return token;
        }
        const auto now = std::time(nullptr);
        return flare::MintToken(Env("TOKEN_SECRET", "insecure-secret"), o_.user, Env("TENANT_ID", "default"),
                                now + 24 * 3600, "");
    }

    void Connect() {
        ++generation_;
        auto client = std::make_unique<WsClient>();
        client->set_json(o_.json);
        const int gen = generation_;
        auto st = client->Connect(o_.host, o_.port, "/", std::chrono::seconds(5),
                                  [this, gen](ClientEvent e) { queue_.Push(Event{Event::Kind::kServer, gen, std::move(e)}); });
        if (!st) {
            ScheduleReconnect(st.error().message);
            return;
        }
        client_ = std::move(client);
        pb::ClientFrame f;
        f.set_request_id("auth");
        f.mutable_auth()->set_token(Token());
        f.mutable_auth()->set_device_id(o_.device);
        f.mutable_auth()->set_platform("cli");
        f.mutable_auth()->set_accept_batches(true);
        client_->Send(f);
    }

    void ScheduleReconnect(const std::string& why) {
        if (client_) {
            client_.reset();
        }
        if (ready_ || first_failure_) {
            disconnected_since_ = Clock::now();
            first_failure_ = false;
        }
        ready_ = false;
        in_flight_ = false;  // its answer is lost with the connection: sent again once caught up
        for (auto& [id, t] : tracks_) {
            t.syncing = false;
            t.gap = false;
        }
        backoff_ms_ = std::min(backoff_ms_ == 0 ? 500 : backoff_ms_ * 2, 5000);
        Status("disconnected (" + why + "); reconnecting in " + std::to_string(backoff_ms_) + " ms");
        reconnect_at_ = Clock::now() + std::chrono::milliseconds(backoff_ms_);
    }

    void Handle(Event e) {
        switch (e.kind) {
            case Event::Kind::kLine: {
                pending_.push_back(Pending{msg_prefix_ + std::to_string(++msg_counter_), std::move(e.line)});
                SendNext();
                return;
            }
            case Event::Kind::kEof:
                eof_ = true;
                return;
            case Event::Kind::kServer:
                if (e.generation != generation_ || !client_) {
                    return;  // from a connection already given up
                }
                if (e.server.kind == ClientEvent::Kind::kClosed) {
                    return ScheduleReconnect(e.server.detail.empty() ? "connection closed" : e.server.detail);
                }
                if (e.server.kind == ClientEvent::Kind::kUndecodable) {
                    Status("undecodable frame from the server: " + e.server.detail);
                    return;
                }
                return OnFrame(e.server.frame);
        }
    }

    void OnFrame(const pb::ServerFrame& f) {
        switch (f.body_case()) {
            case pb::ServerFrame::kAuth: return OnAuth(f.auth());
            case pb::ServerFrame::kJoinRoom: return StartCatchUp();
            case pb::ServerFrame::kSyncConversations: return OnConversations(f.sync_conversations());
            case pb::ServerFrame::kSyncMessages: return OnMessages(f.sync_messages());
            case pb::ServerFrame::kSend: return OnSent(f.request_id(), f.send());
            case pb::ServerFrame::kMessage: return OnPush(f.message().message());
            case pb::ServerFrame::kError: return OnError(f.request_id(), f.error());
            case pb::ServerFrame::kGoodbye:
                Status("server said goodbye: " + f.goodbye().reason() + " (" + f.goodbye().message() + ")");
                if (f.goodbye().reason() == "replaced") {
                    Status("another client took over this device; exiting");
                    exit_code_ = 1;
                } else if (f.goodbye().reason() == "kicked") {
                    Status("disconnected by the operator; exiting");  // reconnecting would undo the kick
                    exit_code_ = 1;
                }
                return;
            default: return;  // pong, ack
        }
    }

    void OnAuth(const pb::AuthResponse& a) {
        backoff_ms_ = 0;
        device_ = a.device_id();
        o_.device = a.device_id();  // keep the device (and its server cursor) across reconnects
        heartbeat_ = std::chrono::milliseconds(std::max<uint32_t>(a.heartbeat_interval_ms(), 500));
        next_ping_ = Clock::now() + heartbeat_;
        Status("connected to " + a.gateway_id() + " as " + a.user_id() + " (device " + a.device_id() + ")");
        if (o_.to.empty()) {
            pb::ClientFrame j;
            j.set_request_id("join");
            j.mutable_join_room()->set_room(o_.room);
            client_->Send(j);
        } else {
            StartCatchUp();
        }
    }

    void StartCatchUp() {
        for (auto& [id, t] : tracks_) {
            t.syncing = true;
        }
        pb::ClientFrame s;
        s.set_request_id("convs");
        s.mutable_sync_conversations()->set_include_all(true);
        client_->Send(s);
    }

    bool Syncing() const {
        return std::any_of(tracks_.begin(), tracks_.end(), [](const auto& t) { return t.second.syncing; });
    }

    void OnConversations(const pb::SyncConversationsResponse& r) {
        for (auto& [id, t] : tracks_) {
            uint64_t last = 0;
            for (const auto& c : r.conversations()) {
                if (c.conversation_id() == id) {
                    last = c.last_seq();
                }
            }
            if (!t.cursor) {  // first connect: the last --history messages; later ones catch up from here
                const uint64_t start = last > static_cast<uint64_t>(o_.history) ? last - o_.history : 0;
                t.cursor = start;
                t.acked = start;
                if (id == conversation_) {
                    Status(std::string(o_.to.empty() ? "joined room " + o_.room : "talking with " + o_.to) + " (" +
                           std::to_string(last) + (last == 1 ? " message" : " messages") + " so far)");
                }
            }
            RequestMessages(id);
        }
    }

    void RequestMessages(const std::string& conv) {
        Track& t = tracks_[conv];
        t.syncing = true;
        pb::ClientFrame s;
        s.set_request_id("sync");
        s.mutable_sync_messages()->set_conversation_id(conv);
        s.mutable_sync_messages()->set_after_seq(*t.cursor);
        s.mutable_sync_messages()->set_limit(200);
        client_->Send(s);
    }

    void OnMessages(const pb::SyncMessagesResponse& r) {
        auto it = tracks_.find(r.conversation_id());
        if (it == tracks_.end()) {
            return;
        }
        Track& t = it->second;
        for (const auto& m : r.messages()) {
            Show(m);
        }
        if (r.has_more()) {
            return RequestMessages(r.conversation_id());
        }
        t.syncing = false;
        if (t.gap) {
            t.gap = false;
            return RequestMessages(r.conversation_id());
        }
        if (!ready_ && !Syncing()) {
            ready_ = true;
            in_flight_ = false;
            SendNext();  // what was not acknowledged before the reconnect, same client_msg_id
        }
    }

    void OnPush(const pb::Message& m) {
        auto it = tracks_.find(m.conversation_id());
        if (it == tracks_.end()) {  // live-only broadcasts and the user's other conversations
            const bool broadcast = m.conversation_id() == flare::kBroadcastConversationId;
            std::cout << Format(m, broadcast ? " [broadcast]" : " [" + m.conversation_id() + "]") << std::endl;
            return;
        }
        Track& t = it->second;
        if (!t.cursor || m.seq() <= *t.cursor) {
            return;  // already shown (or not caught up yet: the sync brings it)
        }
        if (m.seq() == *t.cursor + 1 && !t.syncing) {
            return Show(m);
        }
        if (t.syncing) {
            t.gap = true;  // pull again after the running sync
        } else {
            RequestMessages(m.conversation_id());
        }
    }

    void OnSent(const std::string& rid, const pb::SendResponse& s) {
        auto it = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.id == rid; });
        if (it == pending_.end()) {
            return;
        }
        pb::Message m;
        m.set_conversation_id(s.conversation_id());
        m.set_seq(s.seq());
        m.set_server_msg_id(s.server_msg_id());
        m.set_sender_id(o_.user);
        m.set_server_time_ms(s.server_time_ms());
        m.set_text(it->text);
        pending_.erase(it);
        in_flight_ = false;
        OnPush(m);
        SendNext();
    }

    void OnError(const std::string& rid, const pb::Error& e) {
        auto it = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.id == rid; });
        if (it != pending_.end()) {
            if (e.code() == pb::UNAVAILABLE || e.code() == pb::RESOURCE_EXHAUSTED ||
                e.code() == pb::DEADLINE_EXCEEDED) {
                Status("send will be retried: " + e.message());
                in_flight_ = false;  // resent in a second (or after the next reconnect), before anything newer
                retry_at_ = Clock::now() + std::chrono::seconds(1);
                return;
            }
            std::cerr << "! send failed (" << e.reason() << "): " << e.message() << ": \"" << it->text << "\""
                      << std::endl;
            ++failed_sends_;
            pending_.erase(it);
            in_flight_ = false;
            SendNext();
            return;
        }
        std::cerr << "! server error (" << e.reason() << "): " << e.message() << std::endl;
        if (e.code() == pb::UNAUTHENTICATED || rid == "join" || (rid == "sync" && e.code() != pb::UNAVAILABLE)) {
            exit_code_ = 1;
        }
    }

    void SendNext() {
        if (!ready_ || !client_ || in_flight_ || retry_at_ || pending_.empty()) {
            return;
        }
        SendPending(pending_.front());
        in_flight_ = true;
    }

    void SendPending(const Pending& p) {
        pb::ClientFrame f;
        f.set_request_id(p.id);
        f.mutable_send()->set_conversation_id(conversation_);
        f.mutable_send()->set_client_msg_id(p.id);
        f.mutable_send()->set_text(p.text);
        client_->Send(f);
    }

    void Show(const pb::Message& m) {
        Track& t = tracks_[m.conversation_id()];
        if (!t.cursor || m.seq() != *t.cursor + 1) {
            if (t.cursor && m.seq() > *t.cursor + 1) {
                t.gap = true;
            }
            return;
        }
        t.cursor = m.seq();
        std::cout << Format(m, "") << std::endl;
    }

    static std::string Format(const pb::Message& m, const std::string& where) {
        std::time_t t = static_cast<std::time_t>(m.server_time_ms() / 1000);
        std::tm tm{};
        localtime_r(&t, &tm);
        char when[16];
        std::strftime(when, sizeof when, "%H:%M:%S", &tm);
        const bool system = m.kind() == pb::MESSAGE_KIND_SYSTEM;  // from a business system, not a user
        return std::string("[") + when + "]" + where + " " + (system ? "[system] " : "") + m.sender_id() + ": " +
               m.text();
    }

    void FlushAck() {
        if (!client_ || !ready_) {
            return;
        }
        for (auto& [id, t] : tracks_) {
            if (t.cursor && *t.cursor > t.acked) {
                pb::ClientFrame f;
                f.set_request_id("ack");
                f.mutable_ack()->set_conversation_id(id);
                f.mutable_ack()->set_seq(*t.cursor);
                client_->Send(f);
                t.acked = *t.cursor;
            }
        }
    }

    void Ping() {
        pb::ClientFrame f;
        f.set_request_id("ping");
        f.mutable_ping()->set_client_time_ms(0);
        client_->Send(f);
        next_ping_ = Clock::now() + heartbeat_;
    }

    void Finish() {
        FlushAck();
        if (client_) {
            client_->Close();
        }
    }

    Options o_;
    std::string conversation_, device_, msg_prefix_;
    EventQueue queue_;
    std::unique_ptr<WsClient> client_;
    int generation_ = 0;
    bool ready_ = false, eof_ = false, first_failure_ = true;
    // What this client has shown of each conversation it follows: its chat and the user's inbox of
    // business pushes ("system:<user>").
    struct Track {
        std::optional<uint64_t> cursor;
        uint64_t acked = 0;
        bool syncing = false;
        bool gap = false;
    };
    std::map<std::string, Track> tracks_;
    uint64_t msg_counter_ = 0;
    std::deque<Pending> pending_;
    std::optional<Clock::time_point> retry_at_;
    bool in_flight_ = false;  // pending_.front() was sent and is not answered yet
    int failed_sends_ = 0;
    int backoff_ms_ = 0;
    std::optional<int> exit_code_;
    std::chrono::milliseconds heartbeat_{25'000};
    Clock::time_point reconnect_at_{}, next_ping_{}, disconnected_since_{Clock::now()};
    std::optional<Clock::time_point> linger_until_;
};

}  // namespace

int main(int argc, char** argv) {
    Options o;
    bool room_given = false;
    std::vector<std::string> args(argv + 1, argv + argc);
    auto fail = [](const std::string& why) {
        std::cerr << "chatroom_client: " << why << "\n\n" << kUsage;
        return 2;
    };
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto value = [&]() -> std::optional<std::string> {
            if (i + 1 >= args.size()) {
                return std::nullopt;
            }
            return args[++i];
        };
        if (a == "-h" || a == "--help") {
            std::cout << kUsage;
            return 0;
        } else if (a == "--json") {
            o.json = true;
        } else if (a == "--quiet") {
            o.quiet = true;
        } else if (a == "--room" || a == "--to" || a == "--device" || a == "--history" || a == "--linger") {
            auto v = value();
            if (!v) {
                return fail(a + " needs a value");
            }
            if (a == "--room") {
                o.room = *v;
                room_given = true;
            } else if (a == "--to") {
                o.to = *v;
            } else if (a == "--device") {
                o.device = *v;
            } else {
                char* end = nullptr;
                long n = std::strtol(v->c_str(), &end, 10);
                if (v->empty() || *end != '\0' || n < 0 || n > 100000) {
                    return fail(a + " needs a number, not '" + *v + "'");
                }
                (a == "--history" ? o.history : o.linger_s) = static_cast<int>(n);
            }
        } else if (a.starts_with("-")) {
            return fail("unknown option '" + a + "'");
        } else if (o.user.empty()) {
            o.user = a;
        } else {
            return fail("unexpected argument '" + a + "'");
        }
    }
    if (o.user.empty()) {
        return fail("USER is required");
    }
    if (!flare::IsValidName(o.user) || (!o.to.empty() && !flare::IsValidName(o.to)) || !flare::IsValidName(o.room)) {
        return fail("user and room names are 1..64 characters of A-Z a-z 0-9 _ . @ -");
    }
    if (room_given && !o.to.empty()) {
        return fail("--room and --to exclude each other: a room, or one-to-one with a user");
    }
    if (!o.to.empty() && o.to == o.user) {
        return fail("--to must name another user");
    }
    auto hp = flare::client::ParseHostPort(Env("NEGOTIATION_HOST", "localhost:60051"));
    if (!hp) {
        return fail("NEGOTIATION_HOST: " + hp.error().message);
    }
    o.host = hp->first;
    o.port = hp->second;
    return Chat(std::move(o)).Run();
}
