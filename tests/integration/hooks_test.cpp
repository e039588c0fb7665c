// The hook engine against real receivers started by the tests: an HTTP webhook receiver (plain
// sockets, one thread) and a gRPC HookExtension service; the embedded server in process with a
// hooks file written per test.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <boost/json.hpp>

#include "flare/business/v1/business.grpc.pb.h"
#include "flare/hooks/v1/hooks.grpc.pb.h"
#include "hooks/signature.hpp"
#include "test_support.hpp"

namespace flare::testing {
namespace {

namespace bpb = ::flare::business::v1;
namespace hpb = ::flare::hooks::v1;
namespace json = boost::json;

struct HttpRequest {
    std::string path;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
    json::object event() const { return json::parse(body).as_object(); }
};

struct HttpReply {
    int status = 200;
    std::string body;
    int delay_ms = 0;
    bool hang_up = false;  // close the connection without answering
};

// A webhook receiver on 127.0.0.1:0: records every request, answers with `handler`.
class HookReceiver {
public:
    // `keep_alive`: answer with keep-alive and serve further requests on the connection (otherwise
    // one request per connection, "Connection: close").
    explicit HookReceiver(std::function<HttpReply(const HttpRequest&)> handler, bool keep_alive = false)
        : handler_(std::move(handler)), keep_alive_(keep_alive) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        EXPECT_EQ(::listen(fd_, 64), 0);
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { Loop(); });
    }
    ~HookReceiver() {
        stop_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        ::close(fd_);
        thread_.join();
        CloseIdleConnections();
        for (auto& t : workers_) {
            t.join();
        }
    }
    uint16_t port() const { return port_; }
    std::string url(const std::string& path = "/hook") const {
        return "http://127.0.0.1:" + std::to_string(port_) + path;
    }
    std::vector<HttpRequest> requests() {
        std::lock_guard lock(mu_);
        return requests_;
    }
    int connections() const { return connections_.load(); }
    size_t open_connections() {
        std::lock_guard lock(mu_);
        return open_.size();
    }
    // Closes every connection the receiver holds open (as a receiver's idle timeout would).
    void CloseIdleConnections() {
        std::lock_guard lock(mu_);
        for (int c : open_) {
            ::shutdown(c, SHUT_RDWR);
        }
    }
    // Waits until a request matches; returns it.
    std::optional<HttpRequest> Wait(const std::function<bool(const HttpRequest&)>& pred,
                                    std::chrono::milliseconds timeout = 5s) {
        std::unique_lock lock(mu_);
        std::optional<HttpRequest> found;
        cv_.wait_for(lock, timeout, [&] {
            for (const auto& r : requests_) {
                if (pred(r)) {
                    found = r;
                    return true;
                }
            }
            return false;
        });
        return found;
    }
    std::optional<HttpRequest> WaitPoint(const std::string& point) {
        return Wait([&](const HttpRequest& r) { return r.event().at("point").as_string() == point; });
    }

private:
    void Loop() {
        while (!stop_) {
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) {
                return;
            }
            ++connections_;
            {
                std::lock_guard lock(mu_);
                open_.insert(c);
            }
            workers_.emplace_back([this, c] {
                while (Serve(c) && keep_alive_) {
                }
                {
                    std::lock_guard lock(mu_);
                    open_.erase(c);
                }
                ::close(c);
            });
        }
    }
    // Serves one request; false when the connection is done.
    bool Serve(int c) {
        std::string data;
        char buf[4096];
        size_t header_end = std::string::npos;
        size_t want = 0;
        for (;;) {
            ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0) {
                return false;
            }
            data.append(buf, static_cast<size_t>(n));
            if (header_end == std::string::npos) {
                header_end = data.find("\r\n\r\n");
                if (header_end != std::string::npos) {
                    auto pos = data.find("Content-Length: ");
                    if (pos == std::string::npos) pos = data.find("content-length: ");
                    want = pos == std::string::npos ? 0 : std::stoul(data.substr(pos + 16));
                }
            }
            if (header_end != std::string::npos && data.size() >= header_end + 4 + want) {
                break;
            }
        }
        HttpRequest req;
        const std::string head = data.substr(0, header_end);
        req.body = data.substr(header_end + 4, want);
        size_t line_end = head.find("\r\n");
        const std::string first = head.substr(0, line_end);
        req.path = first.substr(first.find(' ') + 1, first.rfind(' ') - first.find(' ') - 1);
        size_t pos = line_end + 2;
        while (pos < head.size()) {
            size_t e = head.find("\r\n", pos);
            if (e == std::string::npos) e = head.size();
            const std::string line = head.substr(pos, e - pos);
            const auto colon = line.find(':');
            if (colon != std::string::npos) {
                std::string name = line.substr(0, colon);
                for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                std::string value = line.substr(colon + 1);
                while (!value.empty() && value.front() == ' ') value.erase(0, 1);
                req.headers[name] = value;
            }
            pos = e + 2;
        }
        HttpReply reply = handler_(req);
        {
            std::lock_guard lock(mu_);
            requests_.push_back(req);
        }
        cv_.notify_all();
        if (reply.hang_up) {
            return false;
        }
        if (reply.delay_ms > 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(reply.delay_ms));
        }
        const std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " X\r\nContent-Type: application/json\r\n"
                                "Content-Length: " + std::to_string(reply.body.size()) + "\r\nConnection: " +
                                (keep_alive_ ? "keep-alive" : "close") + "\r\n\r\n" + reply.body;
        return ::send(c, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size());
    }

    std::function<HttpReply(const HttpRequest&)> handler_;
    bool keep_alive_ = false;
    std::atomic<int> connections_{0};
    std::set<int> open_;  // under mu_
    int fd_ = -1;
    uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<HttpRequest> requests_;
};

std::string Text(const HttpRequest& r) {
    auto e = r.event();
    return std::string(e.at("message").as_object().at("text").as_string());
}

// The hooks file of a test.
class HooksFile {
public:
    explicit HooksFile(const std::string& toml) {
        dir_ = std::filesystem::temp_directory_path() / ("flare-hooks-" + RandomHexId(6));
        std::filesystem::create_directories(dir_ / "hooks.d");
        std::ofstream(path()) << toml;
    }
    ~HooksFile() { std::filesystem::remove_all(dir_); }
    std::string path() const { return (dir_ / "hooks.toml").string(); }
    std::string dir() const { return (dir_ / "hooks.d").string(); }
    void Write(const std::string& toml) { std::ofstream(path()) << toml; }
    void WriteDir(const std::string& name, const std::string& toml) { std::ofstream(dir_ / "hooks.d" / name) << toml; }

private:
    std::filesystem::path dir_;
};

std::unique_ptr<TestServer> ServerWith(const HooksFile& f) {
    return std::make_unique<TestServer>([&](app::Config& c) {
        c.hooks_file = f.path();
        c.hooks_dir = f.dir();
    });
}

std::optional<pb::ServerFrame> SendText(TestClient& c, const std::string& conv, const std::string& text) {
    return c.Send(conv, "c-" + RandomHexId(6), text);
}

const std::string kDirect = "direct:alice:bob";

std::string Metrics(TestServer& server) {
    return RawHttp(server.http_port(), "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + BusinessToken() +
                                           "\r\nConnection: close\r\n\r\n");
}

// A pre-send webhook rejects a message with a forbidden word: the sender gets the hook's reason,
// nobody receives it, nothing is stored; other messages pass. A second hook rewrites text.
TEST(Hooks, PreSendWebhookRejectsAndAnotherRewrites) {
    HookReceiver moderation([](const HttpRequest& r) {
        if (Text(r).find("forbidden") != std::string::npos) {
            return HttpReply{200, R"({"action":"reject","reason":"no forbidden words, please"})"};
        }
        return HttpReply{200, ""};
    });
    HookReceiver rewriter([](const HttpRequest& r) {
        std::string t = Text(r);
        const auto pos = t.find("darn");
        if (pos == std::string::npos) {
            return HttpReply{200, R"({"action":"allow"})"};
        }
        t.replace(pos, 4, "d**n");
        return HttpReply{200, json::serialize(json::object{{"action", "rewrite"}, {"text", t}})};
    });
    HooksFile f("[[hook]]\nname = \"moderation\"\npoints = [\"pre_send\"]\ntransport = \"webhook\"\nurl = \"" +
                moderation.url() + "\"\nsecret = \"s1\"\npriority = 10\n\n[[hook]]\nname = \"polite\"\n"
                "points = [\"pre_send\"]\ntransport = \"webhook\"\nurl = \"" + rewriter.url() +
                "\"\nsecret = \"s2\"\npriority = 20\n");
    auto server = ServerWith(f);
    auto alice = TestClient::Login(server->port(), "alice", "phone");
    auto bob = TestClient::Login(server->port(), "bob", "phone");

    auto refused = SendText(*alice, kDirect, "this is forbidden");
    ASSERT_TRUE(refused && refused->has_error()) << (refused ? refused->DebugString() : "no answer");
    EXPECT_EQ(refused->error().reason(), "rejected_by_hook");
    EXPECT_EQ(refused->error().message(), "no forbidden words, please");
    EXPECT_EQ(refused->error().code(), pb::PERMISSION_DENIED);
    EXPECT_TRUE(bob->Silent()) << "nobody receives a rejected message";
    EXPECT_TRUE(rewriter.requests().empty()) << "a rejection stops the chain";

    auto ok = alice->Send(kDirect, "c-darn", "well darn");
    ASSERT_TRUE(ok && ok->has_send()) << ok->DebugString();
    EXPECT_EQ(ok->send().seq(), 1u) << "the rejected message took no seq";
    EXPECT_EQ(ok->send().text(), "well d**n") << "the sender learns the text as stored";
    auto got = bob->Messages(1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].text(), "well d**n");
    auto retried = alice->Send(kDirect, "c-darn", "well darn");
    ASSERT_TRUE(retried && retried->has_send()) << retried->DebugString();
    EXPECT_TRUE(retried->send().duplicate());
    EXPECT_EQ(retried->send().seq(), 1u);
    EXPECT_EQ(retried->send().text(), "well d**n") << "a retry is answered with the stored text";
    auto plain = SendText(*alice, kDirect, "all fine");
    ASSERT_TRUE(plain && plain->has_send()) << plain->DebugString();
    EXPECT_EQ(plain->send().text(), "") << "an unchanged text is not echoed";
    auto history = bob->SyncAll(kDirect, 0);
    ASSERT_EQ(history.size(), 2u);
    EXPECT_EQ(history[0].text(), "well d**n") << "the rewritten text is what is stored";
    EXPECT_EQ(history[1].text(), "all fine");
    // The hook saw the message as it would be stored.
    auto seen = moderation.requests().back().event();
    EXPECT_EQ(seen.at("point").as_string(), "pre_send");
    EXPECT_EQ(seen.at("hook").as_string(), "moderation");
    EXPECT_EQ(seen.at("user_id").as_string(), "alice");
    EXPECT_EQ(seen.at("conversation_id").as_string(), kDirect);
}

// Webhook connections are kept alive and reused; one the receiver closed is replaced, whether the
// engine sees it closed before using it or only when the receiver hangs up on the request.
TEST(Hooks, WebhookConnectionsAreReusedAndReplacedWhenClosed) {
    std::atomic<bool> hang_up_once{false};
    HookReceiver receiver(
        [&](const HttpRequest&) {
            HttpReply r{200, R"({"action":"allow"})"};
            r.hang_up = hang_up_once.exchange(false);
            return r;
        },
        true);
    HooksFile f("[[hook]]\nname = \"check\"\npoints = [\"pre_send\"]\ntransport = \"webhook\"\nurl = \"" +
                receiver.url() + "\"\nsecret = \"s\"\nfailure = \"closed\"\n");
    auto server = ServerWith(f);
    auto alice = TestClient::Login(server->port(), "alice", "phone");
    for (int i = 1; i <= 20; ++i) {
        auto r = SendText(*alice, kDirect, "m" + std::to_string(i));
        ASSERT_TRUE(r && r->has_send()) << (r ? r->DebugString() : "no answer");
        EXPECT_EQ(r->send().seq(), static_cast<uint64_t>(i));
    }
    EXPECT_EQ(receiver.requests().size(), 20u);
    EXPECT_EQ(receiver.connections(), 1) << "one kept-alive connection for sequential calls";

    // The receiver drops its idle connections: the next call sees it and opens a new one.
    receiver.CloseIdleConnections();
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (receiver.open_connections() > 0 && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(5ms);
    }
    ASSERT_EQ(receiver.open_connections(), 0u);
    auto after_close = SendText(*alice, kDirect, "after close");
    ASSERT_TRUE(after_close && after_close->has_send()) << (after_close ? after_close->DebugString() : "no answer");
    EXPECT_EQ(receiver.connections(), 2);

    // The receiver hangs up on a request sent over a kept-alive connection: sent again on a new one
    // (fail-closed would have refused the message otherwise).
    hang_up_once = true;
    auto after_hang_up = SendText(*alice, kDirect, "after hang-up");
    ASSERT_TRUE(after_hang_up && after_hang_up->has_send())
        << (after_hang_up ? after_hang_up->DebugString() : "no answer");
    EXPECT_EQ(after_hang_up->send().seq(), 22u);
    EXPECT_EQ(receiver.connections(), 3);
    EXPECT_EQ(receiver.requests().size(), 23u) << "the hung-up request and its resend";
    auto history = alice->SyncAll(kDirect, 0);
    EXPECT_EQ(history.size(), 22u);
}

// A hook slower than its timeout: fail-open lets the message through, fail-closed rejects it.
TEST(Hooks, SlowHookHitsItsTimeoutAndTheFailurePolicyApplies) {
    HookReceiver slow([](const HttpRequest&) { return HttpReply{200, R"({"action":"reject","reason":"late"})", 1500}; });
    HooksFile f("[[hook]]\nname = \"slow-open\"\npoints = [\"pre_send\"]\ntransport = \"webhook\"\nurl = \"" +
                slow.url() + "\"\nsecret = \"s\"\ntimeout_ms = 200\nfailure = \"open\"\nconversation_types = [\"direct\"]\n"
                "\n[[hook]]\nname = \"slow-closed\"\npoints = [\"pre_send\"]\ntransport = \"webhook\"\nurl = \"" +
                slow.url() + "\"\nsecret = \"s\"\ntimeout_ms = 200\nfailure = \"closed\"\nconversation_types = [\"room\"]\n");
    auto server = ServerWith(f);
    auto alice = TestClient::Login(server->port(), "alice", "phone");
    const auto start = std::chrono::steady_clock::now();
    auto open = SendText(*alice, kDirect, "hello");
    ASSERT_TRUE(open && open->has_send()) << open->DebugString();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1200)) << "the timeout applied";
    ASSERT_TRUE(alice->Join("lobby").has_value());
    auto closed = SendText(*alice, "room:lobby", "hello room");
    ASSERT_TRUE(closed && closed->has_error()) << closed->DebugString();
    EXPECT_EQ(closed->error().reason(), "rejected_by_hook");
    EXPECT_NE(closed->error().message().find("slow-closed"), std::string::npos) << closed->error().message();
    EXPECT_NE(closed->error().message().find("timed out"), std::string::npos) << closed->error().message();
    auto metrics = Metrics(*server);
    EXPECT_NE(metrics.find("flare_hook_timeouts_total{hook=\"slow-open\",tenant=\"\"} 1"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("flare_hook_timeouts_total{hook=\"slow-closed\",tenant=\"\"} 1"), std::string::npos)
        << metrics;
}

// Webhooks are signed: X-Flare-Signature verifies with the hook's secret over the timestamp and the
// raw body; a tampered body, another secret or an old timestamp fail.
TEST(Hooks, SignaturesVerifyAndATamperedBodyFails) {
    HookReceiver receiver([](const HttpRequest&) { return HttpReply{200, ""}; });
    HooksFile f("[[hook]]\nname = \"audit\"\npoints = [\"post_send\"]\ntransport = \"webhook\"\nurl = \"" +
                receiver.url("/audit") + "\"\nsecret = \"top-secret\"\n");
    auto server = ServerWith(f);
    auto alice = TestClient::Login(server->port(), "alice", "phone");
    ASSERT_TRUE(SendText(*alice, kDirect, "signed")->has_send());
    auto r = receiver.WaitPoint("post_send");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->path, "/audit");
    const std::string ts = r->headers["x-flare-timestamp"], sig = r->headers["x-flare-signature"];
    ASSERT_FALSE(ts.empty());
    ASSERT_TRUE(sig.starts_with("v1=")) << sig;
    const int64_t now = std::time(nullptr);
    EXPECT_TRUE(hooks::Verify("top-secret", ts, r->body, sig, now));
    EXPECT_FALSE(hooks::Verify("top-secret", ts, r->body + " ", sig, now)) << "tampered body";
    std::string flipped = r->body;
    flipped[flipped.size() / 2] ^= 1;
    EXPECT_FALSE(hooks::Verify("top-secret", ts, flipped, sig, now)) << "tampered body";
    EXPECT_FALSE(hooks::Verify("other-secret", ts, r->body, sig, now)) << "wrong secret";
    EXPECT_FALSE(hooks::Verify("top-secret", ts, r->body, sig, now + 3600)) << "replayed an hour later";
    EXPECT_EQ(r->headers["x-flare-hook"], "audit");
}

// post_send, delivery, recall, read, reaction, conversation lifecycle and membership events arrive,
// asynchronously, with the right fields.
TEST(Hooks, EventsArriveWithTheRightFields) {
    HookReceiver receiver([](const HttpRequest&) { return HttpReply{200, ""}; });
    HooksFile f("[[hook]]\nname = \"everything\"\ntransport = \"webhook\"\nsecret = \"s\"\nurl = \"" + receiver.url() +
                "\"\npoints = [\"post_send\", \"delivery\", \"recall\", \"read\", \"reaction\", "
                "\"conversation_created\", \"conversation_dissolved\", \"membership_changed\"]\n");
    auto server = ServerWith(f);
    auto alice = TestClient::Login(server->port(), "alice", "phone");
    auto bob = TestClient::Login(server->port(), "bob", "phone");
    auto sent = SendText(*alice, kDirect, "hello bob");
    ASSERT_TRUE(sent && sent->has_send());

    auto post = receiver.WaitPoint("post_send");
    ASSERT_TRUE(post);
    auto e = post->event();
    EXPECT_EQ(e.at("tenant_id").as_string(), "default");
    EXPECT_EQ(e.at("user_id").as_string(), "alice");
    EXPECT_EQ(e.at("conversation_type").as_string(), "direct");
    auto m = e.at("message").as_object();
    EXPECT_EQ(m.at("text").as_string(), "hello bob");
    EXPECT_EQ(m.at("seq").as_string(), "1");
    EXPECT_EQ(m.at("kind").as_string(), "text");
    EXPECT_EQ(m.at("server_msg_id").as_string(), sent->send().server_msg_id());

    auto delivery = receiver.WaitPoint("delivery");
    ASSERT_TRUE(delivery);
    EXPECT_EQ(delivery->event().at("devices").as_string(), "1") << delivery->body;  // bob's phone
    EXPECT_EQ(delivery->event().at("seq").as_string(), "1");

    pb::ClientFrame react;
    react.mutable_message_op()->set_conversation_id(kDirect);
    react.mutable_message_op()->set_seq(1);
    react.mutable_message_op()->mutable_add_reaction()->set_emoji("👍");
    ASSERT_TRUE(bob->Request(react)->has_message_op());
    auto reaction = receiver.WaitPoint("reaction");
    ASSERT_TRUE(reaction);
    EXPECT_EQ(reaction->event().at("emoji").as_string(), "👍");
    EXPECT_EQ(reaction->event().at("action").as_string(), "added");
    EXPECT_EQ(reaction->event().at("user_id").as_string(), "bob");
    EXPECT_EQ(reaction->event().at("seq").as_string(), "1");

    pb::ClientFrame read;
    read.mutable_read()->set_conversation_id(kDirect);
    read.mutable_read()->set_seq(1);
    ASSERT_TRUE(bob->Request(read)->has_read());
    auto r = receiver.WaitPoint("read");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->event().at("user_id").as_string(), "bob");
    EXPECT_EQ(r->event().at("seq").as_string(), "1");

    pb::ClientFrame recall;
    recall.mutable_message_op()->set_conversation_id(kDirect);
    recall.mutable_message_op()->set_seq(1);
    recall.mutable_message_op()->mutable_recall();
    ASSERT_TRUE(alice->Request(recall)->has_message_op());
    auto rc = receiver.WaitPoint("recall");
    ASSERT_TRUE(rc);
    EXPECT_EQ(rc->event().at("seq").as_string(), "1");
    EXPECT_EQ(rc->event().at("user_id").as_string(), "alice");
    EXPECT_EQ(rc->event().at("message").as_object().at("event_type").as_string(), "recalled");

    pb::ClientFrame create;
    create.mutable_group()->mutable_create()->set_name("Team");
    create.mutable_group()->mutable_create()->add_member_ids("bob");
    create.mutable_group()->mutable_create()->set_group_id("team");
    ASSERT_TRUE(alice->Request(create)->has_group());
    auto created = receiver.WaitPoint("conversation_created");
    ASSERT_TRUE(created);
    EXPECT_EQ(created->event().at("conversation_id").as_string(), "group:team");
    EXPECT_EQ(created->event().at("user_ids").as_array().size(), 2u);
    pb::ClientFrame add;
    add.mutable_group()->set_conversation_id("group:team");
    add.mutable_group()->mutable_add_members()->add_user_ids("carol");
    ASSERT_TRUE(alice->Request(add)->has_group());
    auto added = receiver.WaitPoint("membership_changed");
    ASSERT_TRUE(added);
    EXPECT_EQ(added->event().at("action").as_string(), "added");
    EXPECT_EQ(added->event().at("user_ids").as_array().at(0).as_string(), "carol");
    pb::ClientFrame dissolve;
    dissolve.mutable_group()->set_conversation_id("group:team");
    dissolve.mutable_group()->mutable_dissolve();
    ASSERT_TRUE(alice->Request(dissolve)->has_group());
    ASSERT_TRUE(receiver.WaitPoint("conversation_dissolved"));
}

// An asynchronous hook that fails is retried with backoff, and never slows the send.
TEST(Hooks, AsynchronousHooksRetryAndNeverSlowTheSend) {
    std::atomic<int> calls{0};
    HookReceiver flaky([&](const HttpRequest&) {
        return ++calls < 3 ? HttpReply{503, "busy"} : HttpReply{200, ""};
    });
    HookReceiver slow([](const HttpRequest&) { return HttpReply{200, "", 2000}; });
    HooksFile f("[[hook]]\nname = \"flaky\"\npoints = [\"post_send\"]\ntransport = \"webhook\"\nsecret = \"s\"\nurl = \"" +
                flaky.url() + "\"\nretry_backoff_ms = 50\nmax_attempts = 5\n\n[[hook]]\nname = \"slow\"\n"
                "points = [\"post_send\"]\ntransport = \"webhook\"\nsecret = \"s\"\ntimeout_ms = 5000\nurl = \"" +
                slow.url() + "\"\n");
    auto server = ServerWith(f);
    auto alice = TestClient::Login(server->port(), "alice", "phone");
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(SendText(*alice, kDirect, "fast anyway")->has_send());
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500))
        << "a slow post_send hook does not slow the send";
    ASSERT_TRUE(flaky.Wait([&](const HttpRequest&) { return calls.load() >= 3; }));
    EXPECT_EQ(flaky.requests().size(), 3u) << "two failures, then delivered";
    auto metrics = Metrics(*server);
    EXPECT_NE(metrics.find("flare_hook_retries_total{hook=\"flaky\",tenant=\"\"} 2"), std::string::npos) << metrics;
}

// The built-ins: a keyword filter (reject, or mask) and a per-user rate limit.
TEST(Hooks, KeywordFilterAndRateLimit) {
    HooksFile f("[[hook]]\nname = \"no-spam\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\n"
                "keywords = [\"SPAM\", \"scam\"]\npriority = 1\n\n[[hook]]\nname = \"mask\"\npoints = [\"pre_send\"]\n"
                "transport = \"keyword_filter\"\nkeywords = [\"heck\"]\nmask = true\n\n[[hook]]\nname = \"slow-down\"\n"
                "points = [\"pre_send\"]\ntransport = \"rate_limit\"\nrate_limit = 3\nrate_window_ms = 60000\n");
    auto server = ServerWith(f);
    auto alice = TestClient::Login(server->port(), "alice", "phone");
    auto bob = TestClient::Login(server->port(), "bob", "phone");
    auto spam = SendText(*alice, kDirect, "buy spam now");
    ASSERT_TRUE(spam && spam->has_error());
    EXPECT_EQ(spam->error().reason(), "rejected_by_hook");
    auto masked = SendText(*alice, kDirect, "what the heck");
    ASSERT_TRUE(masked && masked->has_send()) << masked->DebugString();
    EXPECT_EQ(bob->Messages(1).at(0).text(), "what the ****");
    auto two = alice->Send(kDirect, "c-two", "two");
    ASSERT_TRUE(two && two->has_send());
    ASSERT_TRUE(SendText(*alice, kDirect, "three")->has_send());
    auto limited = SendText(*alice, kDirect, "four");
    ASSERT_TRUE(limited && limited->has_error());
    EXPECT_NE(limited->error().message().find("rate_limited"), std::string::npos) << limited->error().message();
    // A retry of a stored message is answered with the original, though the rate limit refuses new ones.
    auto retry = alice->Send(kDirect, "c-two", "two");
    ASSERT_TRUE(retry && retry->has_send()) << retry->DebugString();
    EXPECT_TRUE(retry->send().duplicate());
    EXPECT_EQ(retry->send().seq(), two->send().seq());
    // The same id for a message never stored is refused as before.
    auto refused_again = alice->Send(kDirect, "c-never", "four again");
    ASSERT_TRUE(refused_again && refused_again->has_error());
    ASSERT_TRUE(SendText(*bob, kDirect, "bob has his own budget")->has_send());
    // Another tenant adding a hook (the hook list is rebuilt) forgives nobody.
    auto stub = bpb::BusinessService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server->grpc_port()), grpc::InsecureChannelCredentials()));
    bpb::PutHookRequest put;
    put.mutable_hook()->set_name("theirs");
    put.mutable_hook()->add_points("pre_send");
    put.mutable_hook()->set_transport("keyword_filter");
    put.mutable_hook()->add_keywords("zzz");
    bpb::PutHookResponse resp;
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + BusinessToken("globex"));
    ASSERT_TRUE(stub->PutHook(&ctx, put, &resp).ok());
    auto still = SendText(*alice, kDirect, "five");
    ASSERT_TRUE(still && still->has_error()) << "the rate limit survived the rebuild";
    // An edit passes the pre_send hooks like a message (bob edits his message into spam).
    auto bobs = SendText(*bob, kDirect, "harmless");
    ASSERT_TRUE(bobs && bobs->has_send());
    pb::ClientFrame edit;
    edit.mutable_message_op()->set_conversation_id(kDirect);
    edit.mutable_message_op()->set_seq(bobs->send().seq());
    edit.mutable_message_op()->mutable_edit()->set_text("now it is spam");
    auto refused = bob->Request(edit);
    ASSERT_TRUE(refused && refused->has_error()) << refused->DebugString();
    EXPECT_EQ(refused->error().reason(), "rejected_by_hook");
    edit.mutable_message_op()->mutable_edit()->set_text("oh heck");
    auto masked_edit = bob->Request(edit);
    ASSERT_TRUE(masked_edit && masked_edit->has_message_op()) << masked_edit->DebugString();
    EXPECT_EQ(masked_edit->message_op().text(), "oh ****") << "the editor learns what was stored";
    pb::ClientFrame get;
    get.mutable_get_message()->set_conversation_id(kDirect);
    get.mutable_get_message()->set_seq(bobs->send().seq());
    EXPECT_EQ(bob->Request(get)->get_message().message().text(), "oh ****");
}

// A gRPC HookExtension service started by the test rejects and rewrites.
class Extension final : public hpb::HookExtension::Service {
public:
    grpc::Status PreSend(grpc::ServerContext*, const hpb::HookEvent* req, hpb::PreSendReply* resp) override {
        ++calls;
        if (req->message().text().find("nope") != std::string::npos) {
            resp->set_action("reject");
            resp->set_reason("grpc says nope");
        } else if (req->message().text() == "shout") {
            resp->set_action("rewrite");
            resp->set_text("SHOUT");
        }
        return grpc::Status::OK;
    }
    grpc::Status OnEvent(grpc::ServerContext*, const hpb::HookEvent* req, hpb::EventAck*) override {
        std::lock_guard lock(mu);
        points.push_back(req->point());
        return grpc::Status::OK;
    }
    std::atomic<int> calls{0};
    std::mutex mu;
    std::vector<std::string> points;
};

TEST(Hooks, GrpcHookExtension) {
    Extension ext;
    int port = 0;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&ext);
    auto grpc_server = b.BuildAndStart();
    ASSERT_GT(port, 0);
    HooksFile f("[[hook]]\nname = \"ext\"\npoints = [\"pre_send\", \"post_send\"]\ntransport = \"grpc\"\n"
                "target = \"127.0.0.1:" + std::to_string(port) + "\"\n");
    auto server = ServerWith(f);
    auto alice = TestClient::Login(server->port(), "alice", "phone");
    auto bob = TestClient::Login(server->port(), "bob", "phone");
    auto no = SendText(*alice, kDirect, "nope");
    ASSERT_TRUE(no && no->has_error());
    EXPECT_EQ(no->error().message(), "grpc says nope");
    ASSERT_TRUE(SendText(*alice, kDirect, "shout")->has_send());
    EXPECT_EQ(bob->Messages(1).at(0).text(), "SHOUT");
    for (int i = 0; i < 100; ++i) {
        {
            std::lock_guard lock(ext.mu);
            if (!ext.points.empty()) break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::lock_guard lock(ext.mu);
    ASSERT_EQ(ext.points.size(), 1u);
    EXPECT_EQ(ext.points[0], "post_send");
    grpc_server->Shutdown();
}

// A broken hooks file stops start-up with the file, line and key; a broken reload keeps the hooks
// in use.
TEST(Hooks, ABrokenConfigFailsStartUpWithAPreciseMessage) {
    HooksFile f("[[hook]]\nname = \"x\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\nkeywords = [\"a\"]\n"
                "timeout_ms = \"fast\"\n");
    try {
        TestServer server([&](app::Config& c) { c.hooks_file = f.path(); });
        FAIL() << "started with a broken hooks file";
    } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(f.path() + ":6:"), std::string::npos) << what;
        EXPECT_NE(what.find("'timeout_ms' must be an integer"), std::string::npos) << what;
        EXPECT_NE(what.find("hook 'x'"), std::string::npos) << what;
    }
    HooksFile g("");
    g.WriteDir("20-bad.toml", "[[hook]]\nname = \"y\"\npoints = [\"pre_send\"]\ntransport = \"webhook\"\n"
                              "url = \"http://127.0.0.1:1/\"\nsecret = \"s\"\nretries = 3\n");
    try {
        TestServer server([&](app::Config& c) { c.hooks_dir = g.dir(); });
        FAIL() << "started with a broken hooks.d file";
    } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("20-bad.toml:7:"), std::string::npos) << what;
        EXPECT_NE(what.find("unknown key 'retries'"), std::string::npos) << what;
    }
    HooksFile h("[[hook]]\npoints = [\"pre_sent\"]\n");
    try {
        TestServer server([&](app::Config& c) { c.hooks_file = h.path(); });
        FAIL() << "started with an unknown point";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(":2: hook: 'points': unknown point 'pre_sent'"), std::string::npos)
            << e.what();
    }
    // Reload: a broken file is refused and the hooks in use stay.
    HooksFile ok("[[hook]]\nname = \"no-spam\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\n"
                 "keywords = [\"spam\"]\n");
    TestServer server([&](app::Config& c) { c.hooks_file = ok.path(); });
    ok.Write("[[hook]]\nname = \"no-spam\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\n");
    auto reload = server.server().ReloadHooks();
    ASSERT_FALSE(reload.ok());
    EXPECT_NE(reload.error().message.find("'keywords' must list at least one word"), std::string::npos)
        << reload.error().message;
    auto alice = TestClient::Login(server.port(), "alice", "phone");
    auto spam = SendText(*alice, kDirect, "spam");
    ASSERT_TRUE(spam && spam->has_error()) << "the old hooks still apply";
    ok.Write("");
    ASSERT_TRUE(server.server().ReloadHooks().ok());
    ASSERT_TRUE(SendText(*alice, kDirect, "spam")->has_send()) << "a good reload applies";
}

// Hooks managed through the business API: per tenant, stored, effective at once, listed without
// their secrets, deleted.
TEST(Hooks, BusinessApiManagesHooksPerTenant) {
    HooksFile f("");
    auto server = ServerWith(f);
    auto stub = bpb::BusinessService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server->grpc_port()), grpc::InsecureChannelCredentials()));
    auto call = [&](auto method, const auto& req, auto* resp) {
        grpc::ClientContext ctx;
        ctx.AddMetadata("authorization", "Bearer " + BusinessToken());
        return (stub.get()->*method)(&ctx, req, resp);
    };
    bpb::PutHookRequest put;
    auto* h = put.mutable_hook();
    h->set_name("tenant-filter");
    h->add_points("pre_send");
    h->set_transport("keyword_filter");
    h->add_keywords("refund");
    bpb::PutHookResponse put_resp;
    auto s = call(&bpb::BusinessService::Stub::PutHook, put, &put_resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    auto alice = TestClient::Login(server->port(), "alice", "phone");
    auto refused = SendText(*alice, kDirect, "I want a refund");
    ASSERT_TRUE(refused && refused->has_error()) << refused->DebugString();
    // Another tenant is not affected.
    auto other = TestClient::LoginTenant(server->port(), "alice", "phone", "globex");
    ASSERT_TRUE(SendText(*other, kDirect, "I want a refund")->has_send());

    bpb::PutHookRequest bad;
    bad.mutable_hook()->set_name("broken");
    bad.mutable_hook()->add_points("pre_send");
    bad.mutable_hook()->set_transport("webhook");
    bad.mutable_hook()->set_url("ftp://nope");
    s = call(&bpb::BusinessService::Stub::PutHook, bad, &put_resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("'url'"), std::string::npos) << s.error_message();

    // A webhook's secret is never listed; putting back what ListHooks shows keeps it.
    HookReceiver receiver([](const HttpRequest&) { return HttpReply{200, ""}; });
    bpb::PutHookRequest web;
    web.mutable_hook()->set_name("audit");
    web.mutable_hook()->add_points("post_send");
    web.mutable_hook()->set_transport("webhook");
    web.mutable_hook()->set_url(receiver.url());
    web.mutable_hook()->set_secret("tenant-secret");
    ASSERT_TRUE(call(&bpb::BusinessService::Stub::PutHook, web, &put_resp).ok());

    bpb::ListHooksResponse list;
    ASSERT_TRUE(call(&bpb::BusinessService::Stub::ListHooks, bpb::ListHooksRequest{}, &list).ok());
    ASSERT_EQ(list.hooks_size(), 2);
    EXPECT_EQ(list.hooks(1).name(), "tenant-filter");
    EXPECT_EQ(list.hooks(1).keywords(0), "refund");
    EXPECT_EQ(list.hooks(0).secret(), "(set)");
    // GET /metrics: the operator's tenant sees every hook, another tenant only its own.
    EXPECT_NE(Metrics(*server).find("hook=\"tenant-filter\",tenant=\"default\""), std::string::npos);
    const std::string globex_metrics =
        RawHttp(server->http_port(), "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                                         BusinessToken("globex") + "\r\nConnection: close\r\n\r\n");
    EXPECT_NE(globex_metrics.find("flare_hook_queued"), std::string::npos) << globex_metrics;
    EXPECT_EQ(globex_metrics.find("tenant-filter"), std::string::npos) << globex_metrics;
    bpb::PutHookRequest back;
    *back.mutable_hook() = list.hooks(0);
    back.mutable_hook()->set_timeout_ms(700);
    ASSERT_TRUE(call(&bpb::BusinessService::Stub::PutHook, back, &put_resp).ok());
    ASSERT_TRUE(SendText(*alice, kDirect, "audited")->has_send());
    auto audited = receiver.WaitPoint("post_send");
    ASSERT_TRUE(audited);
    EXPECT_TRUE(hooks::Verify("tenant-secret", audited->headers["x-flare-timestamp"], audited->body,
                              audited->headers["x-flare-signature"], std::time(nullptr)))
        << "the secret survived a put of the listed hook";

    // Stored: a restart keeps it.
    server->Restart();
    stub = bpb::BusinessService::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(server->grpc_port()),
                                                             grpc::InsecureChannelCredentials()));
    auto again = TestClient::Login(server->port(), "alice", "phone");
    ASSERT_TRUE(SendText(*again, kDirect, "refund please")->has_error());

    bpb::DeleteHookRequest del;
    del.set_name("tenant-filter");
    bpb::DeleteHookResponse del_resp;
    s = call(&bpb::BusinessService::Stub::DeleteHook, del, &del_resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_TRUE(SendText(*again, kDirect, "refund please, now")->has_send());
    s = call(&bpb::BusinessService::Stub::DeleteHook, del, &del_resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);

    // The operator's files may name a hook like a tenant's: a reload that does so never blocks the
    // tenant's updates of its own.
    f.Write("[[hook]]\nname = \"audit\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\n"
            "keywords = [\"operator-word\"]\n");
    ASSERT_TRUE(server->server().ReloadHooks().ok());
    ASSERT_TRUE(SendText(*again, kDirect, "operator-word")->has_error()) << "the file hook applies";
    back.mutable_hook()->set_timeout_ms(900);
    s = call(&bpb::BusinessService::Stub::PutHook, back, &put_resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
}

}  // namespace
}  // namespace flare::testing

namespace flare::testing {
namespace {

// Pipelined sends through a pre_send hook, from two devices into one conversation: every one is
// answered, stored once, and delivered in the order it was stored (the per-conversation pre_send
// queue neither loses nor reorders nor runs one twice).
TEST(Hooks, PipelinedSendsThroughPreSendHooksStayExactAndOrdered) {
    HooksFile f("[[hook]]\nname = \"no-spam\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\n"
                "keywords = [\"spam\"]\n");
    auto server = ServerWith(f);
    auto a1 = TestClient::Login(server->port(), "alice", "phone");
    auto a2 = TestClient::Login(server->port(), "alice", "laptop");
    auto bob = TestClient::Login(server->port(), "bob", "phone");
    constexpr int kEach = 200;  // below the gateway's 256 unanswered requests per connection
    for (int i = 0; i < kEach; ++i) {
        for (auto* c : {a1.get(), a2.get()}) {
            pb::ClientFrame fr;
            fr.set_request_id(std::string(c == a1.get() ? "p" : "l") + std::to_string(i));
            fr.mutable_send()->set_conversation_id(kDirect);
            fr.mutable_send()->set_client_msg_id(fr.request_id());
            fr.mutable_send()->set_text(i % 50 == 7 ? "spam " + fr.request_id() : "m " + fr.request_id());
            c->SendFrame(fr);
        }
    }
    int acked = 0, refused = 0;
    for (auto* c : {a1.get(), a2.get()}) {
        std::vector<uint64_t> seqs;
        while (acked + refused < (c == a1.get() ? kEach : 2 * kEach)) {
            auto fr = c->NextPush(10s);
            ASSERT_TRUE(fr.has_value()) << "answers missing: " << acked << " acked, " << refused << " refused";
            if (fr->has_send()) {
                ++acked;
                seqs.push_back(fr->send().seq());
            } else if (fr->has_error()) {
                EXPECT_EQ(fr->error().reason(), "rejected_by_hook");
                ++refused;
            }
        }
        EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end())) << "one device's messages are stored in its order";
    }
    EXPECT_EQ(refused, 2 * (kEach / 50));
    EXPECT_EQ(acked, 2 * kEach - refused);
    auto got = bob->Messages(static_cast<size_t>(acked), 20s);
    ASSERT_EQ(got.size(), static_cast<size_t>(acked));
    for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].seq(), i + 1) << "dense, in order, once";
    }
    EXPECT_TRUE(bob->Silent());
}

}  // namespace
}  // namespace flare::testing

namespace flare::testing {
namespace {

// The same under load from many conversations at once (what flare-bench found: the pre_send queue
// must not start a second run of a conversation while one is in flight).
TEST(Hooks, ManyConversationsThroughPreSendHooksUnderLoad) {
    HooksFile f("[[hook]]\nname = \"no-spam\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\n"
                "keywords = [\"spam\"]\n");
    auto server = ServerWith(f);
    constexpr int kPairs = 16, kEach = 200;
    std::vector<std::unique_ptr<TestClient>> senders, receivers;
    for (int p = 0; p < kPairs; ++p) {
        senders.push_back(TestClient::Login(server->port(), "s" + std::to_string(p), "d"));
        receivers.push_back(TestClient::Login(server->port(), "r" + std::to_string(p), "d"));
    }
    for (int i = 0; i < kEach; ++i) {
        for (int p = 0; p < kPairs; ++p) {
            pb::ClientFrame fr;
            fr.set_request_id("q" + std::to_string(i));
            fr.mutable_send()->set_conversation_id(DirectConversationId("r" + std::to_string(p), "s" + std::to_string(p)));
            fr.mutable_send()->set_client_msg_id(fr.request_id());
            fr.mutable_send()->set_text("m " + std::to_string(i));
            senders[p]->SendFrame(fr);
        }
    }
    for (int p = 0; p < kPairs; ++p) {
        int answered = 0;
        while (answered < kEach) {
            auto fr = senders[p]->NextPush(20s);
            ASSERT_TRUE(fr.has_value()) << "pair " << p << ": " << answered << " answered";
            ASSERT_TRUE(fr->has_send()) << fr->DebugString();
            EXPECT_EQ(fr->send().seq(), static_cast<uint64_t>(answered + 1));
            ++answered;
        }
        auto got = receivers[p]->Messages(kEach, 20s);
        ASSERT_EQ(got.size(), static_cast<size_t>(kEach));
        for (int i = 0; i < kEach; ++i) {
            EXPECT_EQ(got[i].text(), "m " + std::to_string(i)) << "stored in the order sent";
        }
    }
}

}  // namespace
}  // namespace flare::testing
