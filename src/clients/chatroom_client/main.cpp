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
#include <vector>

#include "auth/jwt.hpp"
#include "client/ws_client.hpp"
#include "common/clock.hpp"
#include "domain/types.hpp"

namespace {

using flare::client::ClientEvent;
using flare::client::WsClient;
namespace pb = flare::client::pb;
using Clock = std::chrono::steady_clock;

// What others wrote, made safe for a terminal: control characters (C0, DEL, C1: escape sequences,
// carriage returns, bells) would let a sender move the cursor, fake lines or retitle the window,
// so each shows as U+FFFD; a line break shows as "↵" and a tab as a space, so a message stays
// on its one line.
std::string ForTerminal(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\t') {
            out += ' ';
        } else if (s[i] == '\n') {
            out += "\u21b5";
        } else if (const size_t n = flare::ControlCharacterAt(s, i); n != 0) {
            out += "\ufffd";
            i += n - 1;
        } else {
            out += s[i];
        }
    }
    return out;
}

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
id after the time, e.g. "[12:00:01] [room:lobby] #7 user2: hi"; #7 is the message's seq.
Words "@user" in a line mention that user, "@all" everyone (group admins).
Lines starting with / are commands (start a line with // to send one that begins with /):
  /group create NAME [USER...]  create a group and talk in it
  /open CONVERSATION            talk in another conversation (group:ID, direct:A:B, room:NAME)
  /invite USER...  /remove USER...  /leave  /rename NAME  /dissolve
  /role USER owner|admin|member  /mute USER SECONDS (0 unmutes)
  /read [SEQ]         mark read up to SEQ (default: the newest shown)
  /recall SEQ  /edit SEQ TEXT  /delete SEQ (for everyone)  /hide SEQ (for me)
  /react SEQ EMOJI  /unreact SEQ EMOJI  /info SEQ (edits, reactions, who read it)
  /typing  /list (conversations, unread counts)  /pin  /unpin  /quiet-on  /quiet-off
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
        std::string conversation;
    };

public:
    explicit Chat(Options o) : o_(std::move(o)) {
        conversation_ = Initial();
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
            queue_.Push(Event{Event::Kind::kEof, 0, {}, {}});
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
            // Input over and every line answered: done once caught up, or even while the gateway is
            // away (nothing is left to send; only receiving would wait for it).
            const bool answered = eof_ && pending_.empty() && backlog_.empty() && command_rid_.empty();
            if (answered && ((ready_ && !Syncing()) || (!ready_ && was_ready_))) {
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
            std::cerr << "* " << ForTerminal(s) << std::endl;
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
                                  [this, gen](ClientEvent e) { queue_.Push(Event{Event::Kind::kServer, gen, std::move(e), {}}); });
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
        if (!command_rid_.empty()) {
            Status("the connection was lost before the last command was answered; it may or may not have taken effect");
            command_rid_.clear();
        }
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
            case Event::Kind::kLine:
                backlog_.push_back(std::move(e.line));
                return Drain();
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
        Dispatch(f);
        if (!command_rid_.empty() && f.request_id() == command_rid_) {
            command_rid_.clear();  // answered: the lines after it may go
        }
        Drain();
    }

    // Lines are taken in the order they were typed: a command waits until the client is connected
    // and every earlier message is acknowledged, and the lines after a command wait for its answer
    // (a /group create decides where they go). Messages typed while disconnected are queued and
    // sent once connected, as before.
    void Drain() {
        while (!backlog_.empty() && command_rid_.empty()) {
            std::string line = backlog_.front();
            if (line.starts_with("/") && !line.starts_with("//")) {
                if (!ready_ || !client_ || !pending_.empty()) {
                    return;
                }
                backlog_.pop_front();
                Command(line);
                continue;
            }
            backlog_.pop_front();
            if (line.starts_with("//")) {
                line.erase(0, 1);
            }
            pending_.push_back(Pending{msg_prefix_ + std::to_string(++msg_counter_), std::move(line), conversation_});
            SendNext();
        }
    }

    void Dispatch(const pb::ServerFrame& f) {
        switch (f.body_case()) {
            case pb::ServerFrame::kAuth: return OnAuth(f.auth());
            case pb::ServerFrame::kJoinRoom: return StartCatchUp();
            case pb::ServerFrame::kSyncConversations: return OnConversations(f.sync_conversations());
            case pb::ServerFrame::kSyncMessages: return OnMessages(f.sync_messages());
            case pb::ServerFrame::kSend: return OnSent(f.request_id(), f.send());
            case pb::ServerFrame::kMessage: return OnPush(f.message().message());
            case pb::ServerFrame::kError: return OnError(f.request_id(), f.error());
            case pb::ServerFrame::kNotice: return OnNotice(f.notice());
            case pb::ServerFrame::kGroup: return OnGroup(f.group());
            case pb::ServerFrame::kMessageOp:
                return Say("done: " + op_what_ + " (#" + std::to_string(f.message_op().seq()) + " in " +
                           f.message_op().conversation_id() + ")" +
                           (f.message_op().text().empty() ? "" : "; stored as: " + f.message_op().text()));
            case pb::ServerFrame::kRead:
                return Say("read " + f.read().conversation_id() + " up to #" + std::to_string(f.read().read_seq()));
            case pb::ServerFrame::kDeleteForMe: return Say("hidden for you");
            case pb::ServerFrame::kUpdateSettings:
                return Say(f.update_settings().conversation_id() + (f.update_settings().pinned() ? " pinned" : " not pinned") +
                           (f.update_settings().muted() ? ", notifications off" : ", notifications on"));
            case pb::ServerFrame::kListConversations: return OnList(f.list_conversations());
            case pb::ServerFrame::kTyping: return Say("told " + conversation_ + " you are typing");
            case pb::ServerFrame::kGetMessage: return OnInfo(f.get_message());
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
                if (id == conversation_ && id == Initial()) {
                    const std::string what = o_.to.empty() ? "joined room " + o_.room : "talking with " + o_.to;
                    Status(what + " (" + std::to_string(last) + (last == 1 ? " message" : " messages") + " so far)");
                }
            }
            RequestMessages(id);
        }
    }

    void RequestMessages(const std::string& conv) {
        Track& t = tracks_[conv];
        t.syncing = true;
        pb::ClientFrame s;
        s.set_request_id("sync:" + conv);
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
        if (t.announce) {
            t.announce = false;
            Say("talking in " + r.conversation_id() + " (" + std::to_string(r.last_seq()) +
                (r.last_seq() == 1 ? " message" : " messages") + " so far)");
        }
        if (t.gap) {
            t.gap = false;
            return RequestMessages(r.conversation_id());
        }
        if (!ready_ && !Syncing()) {
            ready_ = true;
            was_ready_ = true;
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
        m.set_kind(pb::MESSAGE_KIND_TEXT);
        m.set_conversation_id(s.conversation_id());
        m.set_seq(s.seq());
        m.set_server_msg_id(s.server_msg_id());
        m.set_sender_id(o_.user);
        m.set_server_time_ms(s.server_time_ms());
        m.set_text(s.text().empty() ? it->text : s.text());  // a pre-send hook may have rewritten it
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
            std::cerr << "! send failed (" << ForTerminal(e.reason()) << "): " << ForTerminal(e.message()) << ": \""
                      << ForTerminal(it->text) << "\"" << std::endl;
            ++failed_sends_;
            pending_.erase(it);
            in_flight_ = false;
            SendNext();
            return;
        }
        std::cerr << "! server error (" << ForTerminal(e.reason()) << "): " << ForTerminal(e.message()) << std::endl;
        const bool sync = rid.starts_with("sync:") && e.code() != pb::UNAVAILABLE;
        const bool open_join = rid.starts_with("open-join:");
        if ((sync || open_join) && rid.substr(rid.find(':') + 1) != Initial()) {
            // A conversation /open could not read. Lines keep going there (and are refused), never
            // to another chat the user did not choose.
            const std::string conv = rid.substr(rid.find(':') + 1);
            tracks_.erase(conv);
            if (conversation_ == conv) {
                Say("cannot open " + conv + ": what you type now is refused; /open another conversation");
            }
            return;
        }
        if (e.code() == pb::UNAUTHENTICATED || rid == "join" || sync) {
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
        f.mutable_send()->set_conversation_id(p.conversation);
        f.mutable_send()->set_client_msg_id(p.id);
        f.mutable_send()->set_text(p.text);
        for (const auto& word : Words(p.text)) {
            if (word == "@all") {
                f.mutable_send()->set_mention_all(true);
            } else if (word.size() > 1 && word[0] == '@' && flare::IsValidName(word.substr(1))) {
                f.mutable_send()->add_mentions(word.substr(1));
            }
        }
        client_->Send(f);
    }

    static std::vector<std::string> Words(const std::string& s, size_t max = 0) {
        std::vector<std::string> out;
        size_t i = 0;
        while (i < s.size()) {
            while (i < s.size() && s[i] == ' ') ++i;
            if (i >= s.size()) break;
            if (max != 0 && out.size() + 1 == max) {
                out.push_back(s.substr(i));  // the rest, as one
                break;
            }
            const size_t j = s.find(' ', i);
            out.push_back(s.substr(i, j == std::string::npos ? std::string::npos : j - i));
            i = j == std::string::npos ? s.size() : j;
        }
        return out;
    }

    void Say(const std::string& s) { std::cout << "* " << ForTerminal(s) << std::endl; }

    // A slash command: one request, its answer printed when it comes.
    void Command(const std::string& line) {
        auto w = Words(line);
        const std::string cmd = w[0];
        auto seq_arg = [&](size_t i) -> std::optional<uint64_t> {
            if (w.size() <= i) return std::nullopt;
            char* end = nullptr;
            const unsigned long long v = std::strtoull(w[i].c_str(), &end, 10);
            if (w[i].empty() || *end != '\0' || v == 0) return std::nullopt;
            return v;
        };
        auto usage = [&](const std::string& how) { std::cerr << "! usage: " << how << std::endl; };
        if (!client_ || !ready_) {
            std::cerr << "! not connected yet; try again in a moment" << std::endl;
            return;
        }
        pb::ClientFrame f;
        f.set_request_id("cmd-" + std::to_string(++msg_counter_));
        auto group = [&]() {
            f.mutable_group()->set_conversation_id(conversation_);
            return f.mutable_group();
        };
        auto op = [&](uint64_t seq) {
            f.mutable_message_op()->set_conversation_id(conversation_);
            f.mutable_message_op()->set_seq(seq);
            return f.mutable_message_op();
        };
        if (cmd == "/group") {
            if (w.size() < 3 || w[1] != "create") return usage("/group create NAME [USER...]");
            auto* c = f.mutable_group()->mutable_create();
            c->set_name(w[2]);
            for (size_t i = 3; i < w.size(); ++i) c->add_member_ids(w[i]);
        } else if (cmd == "/open") {
            if (w.size() != 2) return usage("/open CONVERSATION");
            auto ref = flare::ParseConversationId(w[1]);
            if (!ref && w[1].starts_with("direct:")) {  // the two users in either order
                const auto colon = w[1].find(':', 7);
                if (colon != std::string::npos) {
                    ref = flare::ParseConversationId(
                        flare::DirectConversationId(w[1].substr(7, colon - 7), w[1].substr(colon + 1)));
                }
            }
            if (!ref) return usage(ref.error().message);
            Open(ref->id);
            // The next lines wait until the conversation is readable (or found not to be).
            command_rid_ = (ref->type == flare::ConversationType::kRoom && ref->id != Initial() ? "open-join:" : "sync:") +
                           ref->id;
            return;
        } else if (cmd == "/invite" || cmd == "/remove") {
            if (w.size() < 2) return usage(cmd + " USER...");
            auto* m = cmd == "/invite" ? group()->mutable_add_members() : group()->mutable_remove_members();
            for (size_t i = 1; i < w.size(); ++i) m->add_user_ids(w[i]);
        } else if (cmd == "/leave") {
            group()->mutable_leave();
        } else if (cmd == "/dissolve") {
            group()->mutable_dissolve();
        } else if (cmd == "/rename") {
            auto rest = Words(line, 2);
            if (rest.size() != 2) return usage("/rename NAME");
            group()->mutable_rename()->set_name(rest[1]);
        } else if (cmd == "/role") {
            if (w.size() != 3 || (w[2] != "owner" && w[2] != "admin" && w[2] != "member")) {
                return usage("/role USER owner|admin|member");
            }
            auto* r = group()->mutable_set_role();
            r->set_user_id(w[1]);
            r->set_role(w[2] == "owner" ? pb::MEMBER_ROLE_OWNER : w[2] == "admin" ? pb::MEMBER_ROLE_ADMIN : pb::MEMBER_ROLE_MEMBER);
        } else if (cmd == "/mute") {
            char* end = nullptr;
            const long secs = w.size() == 3 ? std::strtol(w[2].c_str(), &end, 10) : -1;
            if (w.size() != 3 || *end != '\0' || secs < 0) return usage("/mute USER SECONDS");
            auto* m = group()->mutable_mute();
            m->set_user_id(w[1]);
            m->set_duration_ms(static_cast<int64_t>(secs) * 1000);
        } else if (cmd == "/read") {
            const Track& t = tracks_[conversation_];
            auto seq = w.size() > 1 ? seq_arg(1) : t.cursor;
            if (!seq) return usage("/read [SEQ]");
            f.mutable_read()->set_conversation_id(conversation_);
            f.mutable_read()->set_seq(*seq);
        } else if (cmd == "/recall" || cmd == "/delete" || cmd == "/info" || cmd == "/hide") {
            auto seq = seq_arg(1);
            if (!seq || w.size() != 2) return usage(cmd + " SEQ");
            if (cmd == "/recall") {
                op(*seq)->mutable_recall();
                op_what_ = "recalled #" + std::to_string(*seq);
            } else if (cmd == "/delete") {
                op(*seq)->mutable_delete_for_everyone();
                op_what_ = "deleted #" + std::to_string(*seq) + " for everyone";
            } else if (cmd == "/hide") {
                f.mutable_delete_for_me()->set_conversation_id(conversation_);
                f.mutable_delete_for_me()->add_seqs(*seq);
            } else {
                f.mutable_get_message()->set_conversation_id(conversation_);
                f.mutable_get_message()->set_seq(*seq);
            }
        } else if (cmd == "/edit") {
            auto rest = Words(line, 3);
            auto seq = seq_arg(1);
            if (!seq || rest.size() != 3) return usage("/edit SEQ TEXT");
            op(*seq)->mutable_edit()->set_text(rest[2]);
            op_what_ = "edited #" + std::to_string(*seq);
        } else if (cmd == "/react" || cmd == "/unreact") {
            auto seq = seq_arg(1);
            if (!seq || w.size() != 3) return usage(cmd + " SEQ EMOJI");
            auto* o = op(*seq);
            (cmd == "/react" ? o->mutable_add_reaction() : o->mutable_remove_reaction())->set_emoji(w[2]);
            op_what_ = (cmd == "/react" ? "reacted " + w[2] + " to #" : "took back " + w[2] + " from #") +
                       std::to_string(*seq);
        } else if (cmd == "/typing") {
            f.mutable_typing()->set_conversation_id(conversation_);
        } else if (cmd == "/list") {
            f.mutable_list_conversations()->set_limit(100);
        } else if (cmd == "/pin" || cmd == "/unpin") {
            f.mutable_update_settings()->set_conversation_id(conversation_);
            f.mutable_update_settings()->set_pinned(cmd == "/pin");
        } else if (cmd == "/quiet-on" || cmd == "/quiet-off") {
            f.mutable_update_settings()->set_conversation_id(conversation_);
            f.mutable_update_settings()->set_muted(cmd == "/quiet-on");
        } else {
            std::cerr << "! unknown command " << cmd << " (see --help)" << std::endl;
            return;
        }
        command_rid_ = f.request_id();
        client_->Send(f);
    }

    // Follows `conv` from now on (with the last --history messages) and sends lines there.
    void Open(const std::string& conv) {
        conversation_ = conv;
        tracks_[conv].announce = conv != Initial();
        if (conv.starts_with("room:") && conv != Initial()) {
            pb::ClientFrame j;  // a room is joined first; its answer starts the catch-up
            j.set_request_id("open-join:" + conv);
            j.mutable_join_room()->set_room(conv.substr(5));
            client_->Send(j);
            return;
        }
        StartCatchUp();
    }

    // The conversation the client was started in.
    std::string Initial() const {
        return o_.to.empty() ? flare::RoomConversationId(o_.room) : flare::DirectConversationId(o_.user, o_.to);
    }

    void OnGroup(const pb::GroupResponse& g) {
        const pb::Message& e = g.event();
        if (e.event().type() == pb::EVENT_TYPE_GROUP_CREATED) {
            Say("created " + e.conversation_id() + " (" + e.event().name() + ")");
            Open(e.conversation_id());
            return;
        }
        Say("done: " + Describe(e) + " (#" + std::to_string(e.seq()) + ")");
    }

    void OnNotice(const pb::Notice& n) {
        switch (n.body_case()) {
            case pb::Notice::kTyping:
                if (!n.typing().stopped()) Say(n.user_id() + " is typing in " + n.conversation_id());
                return;
            case pb::Notice::kRead:
                if (n.user_id() != o_.user) {
                    Say(n.user_id() + " read " + n.conversation_id() + " up to #" + std::to_string(n.read().read_seq()));
                }
                return;
            case pb::Notice::kNewMessages:
                if (tracks_.contains(n.conversation_id())) {
                    if (!tracks_[n.conversation_id()].syncing) RequestMessages(n.conversation_id());
                } else {
                    Say("new messages in " + n.conversation_id() + " up to #" + std::to_string(n.new_messages().up_to_seq()));
                }
                return;
            default: return;  // this user's own changes on another device
        }
    }

    void OnList(const pb::ListConversationsResponse& r) {
        if (r.conversations().empty()) {
            return Say("no conversations");
        }
        for (const auto& c : r.conversations()) {
            std::string line = c.conversation_id();
            if (!c.name().empty()) line += " \"" + c.name() + "\"";
            line += ": " + std::to_string(c.unread_count()) + " unread";
            if (c.unread_mentions() > 0) line += ", " + std::to_string(c.unread_mentions()) + " mentioning you";
            if (c.pinned()) line += ", pinned";
            if (c.muted()) line += ", notifications off";
            if (c.dissolved()) line += ", dissolved";
            if (c.has_last_message()) line += "; last: " + c.last_message().sender_id() + ": " + Describe(c.last_message());
            Say(line);
        }
    }

    void OnInfo(const pb::GetMessageResponse& r) {
        const pb::Message& m = r.message();
        Say("#" + std::to_string(m.seq()) + " " + m.sender_id() + ": " + Describe(m));
        for (const auto& e : r.edits()) {
            Say("  version " + std::to_string(e.version()) + ": " + e.text());
        }
        for (const auto& x : m.reactions()) {
            std::string who;
            for (const auto& u : x.user_ids()) who += (who.empty() ? "" : ", ") + u;
            Say("  " + x.emoji() + " " + std::to_string(x.count()) + " (" + who + ")");
        }
        Say("  read by " + std::to_string(r.read_by_size()) + " of " + std::to_string(r.member_count() > 0 ? r.member_count() - 1 : 0));
    }

    // One line for a message of any kind (an event says what happened).
    static std::string Describe(const pb::Message& m) {
        if (m.kind() != pb::MESSAGE_KIND_EVENT) {
            if (m.recalled()) return "(recalled)";
            if (m.deleted()) return "(deleted)";
            if (m.deleted_for_me()) return "(deleted for you)";
            std::string t = m.text();
            if (m.edit_version() > 0) t += " (edited)";
            for (const auto& r : m.reactions()) t += " [" + r.emoji() + " " + std::to_string(r.count()) + "]";
            return t;
        }
        const pb::Event& e = m.event();
        std::string users;
        for (const auto& u : e.user_ids()) users += (users.empty() ? "" : ", ") + u;
        const std::string target = "#" + std::to_string(e.target_seq());
        switch (e.type()) {
            case pb::EVENT_TYPE_GROUP_CREATED: return "created the group \"" + e.name() + "\" with " + users;
            case pb::EVENT_TYPE_GROUP_RENAMED: return "renamed the group to \"" + e.name() + "\"";
            case pb::EVENT_TYPE_MEMBERS_ADDED: return "added " + users;
            case pb::EVENT_TYPE_MEMBERS_REMOVED: return "removed " + users;
            case pb::EVENT_TYPE_MEMBER_LEFT: return "left";
            case pb::EVENT_TYPE_ROLE_CHANGED:
                return "made " + users + " " +
                       (e.role() == pb::MEMBER_ROLE_OWNER ? "owner" : e.role() == pb::MEMBER_ROLE_ADMIN ? "admin" : "member");
            case pb::EVENT_TYPE_MEMBER_MUTED: return e.muted_until_ms() == 0 ? "unmuted " + users : "muted " + users;
            case pb::EVENT_TYPE_GROUP_DISSOLVED: return "dissolved the group";
            case pb::EVENT_TYPE_RECALLED: return "recalled " + target;
            case pb::EVENT_TYPE_EDITED: return "edited " + target + ": " + e.text();
            case pb::EVENT_TYPE_DELETED_FOR_EVERYONE: return "deleted " + target;
            case pb::EVENT_TYPE_REACTION_ADDED: return "reacted " + e.emoji() + " to " + target;
            case pb::EVENT_TYPE_REACTION_REMOVED: return "took back " + e.emoji() + " on " + target;
            default: return "(event)";
        }
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
        const std::string seq = m.seq() > 0 ? "#" + std::to_string(m.seq()) + " " : "";
        if (m.kind() == pb::MESSAGE_KIND_EVENT) {
            return std::string("[") + when + "]" + ForTerminal(where) + " " + seq + "* " + m.sender_id() + " " +
                   ForTerminal(Describe(m));
        }
        return std::string("[") + when + "]" + ForTerminal(where) + " " + seq + (system ? "[system] " : "") +
               m.sender_id() + ": " + ForTerminal(Describe(m));
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
    bool was_ready_ = false;  // connected and caught up at least once
    // What this client has shown of each conversation it follows: its chat and the user's inbox of
    // business pushes ("system:<user>").
    struct Track {
        std::optional<uint64_t> cursor;
        uint64_t acked = 0;
        bool syncing = false;
        bool gap = false;
        bool announce = false;  // opened with /open: say so once it is read
    };
    std::map<std::string, Track> tracks_;
    uint64_t msg_counter_ = 0;
    std::deque<Pending> pending_;
    std::deque<std::string> backlog_;  // lines read and not taken yet (see Drain)
    std::string command_rid_;          // the command waiting for its answer
    std::string op_what_;              // what the last message operation did, for its answer
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
