// The protocol state machine without sockets: frames in, frames out, on a hand-driven "strand".
#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <future>

#include "adapters/memory/memory_presence.hpp"
#include "adapters/sqlite/sqlite_store.hpp"
#include "auth/jwt.hpp"
#include "gateway/client_session.hpp"

namespace flare::gateway {
namespace {

class Strand {
public:
    Poster poster() {
        return [this](std::function<void()> fn) {
            std::lock_guard lock(mu_);
            tasks_.push_back(std::move(fn));
            cv_.notify_all();
        };
    }
    // Runs posted tasks until `done()` holds or 5 s pass.
    template <typename Pred>
    bool RunUntil(Pred done) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!done()) {
            std::unique_lock lock(mu_);
            if (!cv_.wait_until(lock, deadline, [&] { return !tasks_.empty(); })) {
                return false;
            }
            auto fn = std::move(tasks_.front());
            tasks_.pop_front();
            lock.unlock();
            fn();
        }
        return true;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> tasks_;
};

class FakeHost : public SessionHost, public DeliverySink {
public:
    void Send(const pb::ServerFrame& f) override { frames.push_back(f); }
    void Close(const std::string& reason, const std::string&) override { closed = reason; }
    void Deliver(const MessageRecord&, std::span<const uint64_t>, StatusCallback done) override {
        if (done) {
            done(Status{});
        }
    }
    void Disconnect(uint64_t id, std::string reason, std::string) override { disconnected.emplace_back(id, reason); }
    std::vector<pb::ServerFrame> frames;
    std::string closed;
    std::vector<std::pair<uint64_t, std::string>> disconnected;
};

class ClientSessionTest : public ::testing::Test {
protected:
    ClientSessionTest()
        : dir_((std::filesystem::temp_directory_path() / ("flare-cs-" + RandomHexId(6))).string()),
          store_(SqliteOptions{dir_ + "/db", "normal", 64}),
          sessions_(store_),
          push_(presence_, gateways_),
          committer_(store_, push_),
          ids_(clock_, 1),
          orchestrator_(Limits{}, sessions_, store_, committer_, clock_, ids_) {
        store_.Start();
        options_.token_secret = "k";
    }
    ~ClientSessionTest() override {
        store_.Stop();
        std::filesystem::remove_all(dir_);
    }

    std::shared_ptr<ClientSession> NewSession(FakeHost& host, uint64_t id) {
        return std::make_shared<ClientSession>(
            options_, GatewayServices{sessions_, orchestrator_, presence_, host, clock_}, strand_.poster(), &host, id,
            "test");
    }
    pb::ClientFrame Auth(const std::string& rid, const std::string& token, const std::string& device = "d1") {
        pb::ClientFrame f;
        f.set_request_id(rid);
        f.mutable_auth()->set_token(token);
        f.mutable_auth()->set_device_id(device);
        return f;
    }
    std::string Token(const std::string& user) { return MintToken("k", user, "t", clock_.NowMs() / 1000 + 60); }

    std::string dir_;
    ManualClock clock_;
    SqliteStore store_;
    MemoryPresenceRegistry presence_;
    MemoryGatewayDirectory gateways_;
    SessionService sessions_;
    PushService push_;
    LocalCommitter committer_;
    TimeOrderedIdGenerator ids_;
    MessageOrchestrator orchestrator_;
    GatewayOptions options_;
    Strand strand_;
};

TEST_F(ClientSessionTest, RequestsBeforeAuthAreRefusedAndTheConnectionCloses) {
    FakeHost host;
    auto s = NewSession(host, 1);
    pb::ClientFrame f;
    f.set_request_id("r1");
    f.mutable_join_room()->set_room("lobby");
    s->OnFrame(f);
    ASSERT_EQ(host.frames.size(), 1u);
    EXPECT_EQ(host.frames[0].request_id(), "r1");
    EXPECT_EQ(host.frames[0].error().reason(), "auth_required");
    EXPECT_EQ(host.closed, "unauthenticated");
}

TEST_F(ClientSessionTest, PingWorksBeforeAuth) {
    FakeHost host;
    auto s = NewSession(host, 1);
    pb::ClientFrame f;
    f.set_request_id("p");
    f.mutable_ping()->set_client_time_ms(123);
    s->OnFrame(f);
    ASSERT_EQ(host.frames.size(), 1u);
    EXPECT_EQ(host.frames[0].pong().client_time_ms(), 123);
    EXPECT_EQ(host.frames[0].pong().server_time_ms(), clock_.NowMs());
    EXPECT_TRUE(host.closed.empty());
}

TEST_F(ClientSessionTest, BadTokenGetsAReasonThenClose) {
    FakeHost host;
    auto s = NewSession(host, 1);
    s->OnFrame(Auth("a", MintToken("wrong", "u", "t", clock_.NowMs() / 1000 + 60)));
    ASSERT_EQ(host.frames.size(), 1u);
    EXPECT_EQ(host.frames[0].request_id(), "a");
    EXPECT_EQ(host.frames[0].error().code(), pb::UNAUTHENTICATED);
    EXPECT_EQ(host.frames[0].error().reason(), "token_bad_signature");
    EXPECT_EQ(host.closed, "unauthenticated");
}

TEST_F(ClientSessionTest, ABusinessTokenIsNotAUserSession) {
    FakeHost host;
    auto s = NewSession(host, 1);
    s->OnFrame(Auth("a", MintToken("k", "crm", "t", clock_.NowMs() / 1000 + 60, "", kBusinessRole)));
    ASSERT_EQ(host.frames.size(), 1u);
    EXPECT_EQ(host.frames[0].error().code(), pb::UNAUTHENTICATED);
    EXPECT_EQ(host.frames[0].error().reason(), "business_token");
    EXPECT_EQ(host.closed, "unauthenticated");
    EXPECT_FALSE(s->authenticated());
}

TEST_F(ClientSessionTest, AuthThenValidation) {
    FakeHost host;
    auto s = NewSession(host, 1);
    s->OnFrame(Auth("a", Token("alice")));
    ASSERT_TRUE(strand_.RunUntil([&] { return !host.frames.empty(); }));
    ASSERT_TRUE(host.frames[0].has_auth());
    EXPECT_EQ(host.frames[0].auth().user_id(), "alice");
    EXPECT_EQ(host.frames[0].auth().tenant_id(), "t");
    EXPECT_EQ(host.frames[0].auth().device_id(), "d1");
    EXPECT_TRUE(s->authenticated());

    pb::ClientFrame no_rid;
    no_rid.mutable_ping();
    no_rid.clear_ping();
    no_rid.mutable_join_room()->set_room("x");
    s->OnFrame(no_rid);
    EXPECT_EQ(host.frames.back().error().reason(), "missing_request_id");

    pb::ClientFrame empty;
    empty.set_request_id("e");
    s->OnFrame(empty);
    EXPECT_EQ(host.frames.back().error().reason(), "empty_frame");

    s->OnFrame(Auth("a2", Token("alice")));
    EXPECT_EQ(host.frames.back().error().reason(), "already_authenticated");

    pb::ClientFrame send;
    send.set_request_id("s");
    send.mutable_send()->set_conversation_id("room:none");
    send.mutable_send()->set_client_msg_id("c1");
    send.mutable_send()->set_text("hi");
    const size_t before = host.frames.size();
    s->OnFrame(send);
    ASSERT_TRUE(strand_.RunUntil([&] { return host.frames.size() > before; }));
    EXPECT_EQ(host.frames.back().request_id(), "s");
    EXPECT_EQ(host.frames.back().error().code(), pb::NOT_FOUND);
    EXPECT_EQ(host.frames.back().error().reason(), "unknown_conversation");
    EXPECT_TRUE(host.closed.empty());
}

TEST_F(ClientSessionTest, SameDeviceAgainReplacesTheOldConnection) {
    FakeHost host1, host2;
    auto s1 = NewSession(host1, 1);
    auto s2 = NewSession(host2, 2);
    s1->OnFrame(Auth("a", Token("alice"), "phone"));
    ASSERT_TRUE(strand_.RunUntil([&] { return s1->authenticated(); }));
    s2->OnFrame(Auth("a", Token("alice"), "phone"));
    ASSERT_TRUE(strand_.RunUntil([&] { return s2->authenticated(); }));
    ASSERT_EQ(host2.disconnected.size(), 1u);
    EXPECT_EQ(host2.disconnected[0].first, 1u);
    EXPECT_EQ(host2.disconnected[0].second, "replaced");
}

TEST_F(ClientSessionTest, TooManyUnansweredRequestsAreRefusedAndNotStored) {
    options_.max_inflight_requests = 2;
    FakeHost host;
    auto s = NewSession(host, 1);
    s->OnFrame(Auth("a", Token("alice")));
    ASSERT_TRUE(strand_.RunUntil([&] { return s->authenticated(); }));
    host.frames.clear();
    // The answers are posted to the strand, which does not run until RunUntil: all three are unanswered.
    for (int i = 1; i <= 3; ++i) {
        pb::ClientFrame f;
        f.set_request_id("s" + std::to_string(i));
        f.mutable_send()->set_conversation_id("direct:alice:bob");
        f.mutable_send()->set_client_msg_id("c" + std::to_string(i));
        f.mutable_send()->set_text("x");
        s->OnFrame(f);
    }
    ASSERT_EQ(host.frames.size(), 1u);
    EXPECT_EQ(host.frames[0].request_id(), "s3");
    EXPECT_EQ(host.frames[0].error().code(), pb::RESOURCE_EXHAUSTED);
    EXPECT_EQ(host.frames[0].error().reason(), "too_many_inflight");
    ASSERT_TRUE(strand_.RunUntil([&] { return host.frames.size() == 3; }));
    EXPECT_EQ(host.frames[1].send().seq(), 1u);
    EXPECT_EQ(host.frames[2].send().seq(), 2u);
    // Once answered, there is room again; the refused one can be retried.
    pb::ClientFrame retry;
    retry.set_request_id("s3b");
    retry.mutable_send()->set_conversation_id("direct:alice:bob");
    retry.mutable_send()->set_client_msg_id("c3");
    retry.mutable_send()->set_text("x");
    s->OnFrame(retry);
    ASSERT_TRUE(strand_.RunUntil([&] { return host.frames.size() == 4; }));
    EXPECT_EQ(host.frames[3].send().seq(), 3u);
    EXPECT_FALSE(host.frames[3].send().duplicate());
}

TEST_F(ClientSessionTest, TheConversationCacheStaysBounded) {
    SessionService small(store_, 64);
    for (int i = 0; i < 1000; ++i) {
        auto answered = std::make_shared<std::promise<bool>>();
        small.Resolve("t", "alice", DirectConversationId("alice", "peer" + std::to_string(i)),
                      [answered](Result<SessionService::Resolved> r) { answered->set_value(r.ok()); });
        ASSERT_TRUE(answered->get_future().get());
        ASSERT_LE(small.cached_conversations(), 64u) << "after " << i;
    }
    store_.Stop();  // its threads may still be finishing a callback into `small`
}

}  // namespace
}  // namespace flare::gateway
