// The distributed send pipeline (src/rpc/pipeline.hpp) on every bus adapter: BusCommitter publishes
// appends, StorageWriter stores them (SQLite here: the store is not what is under test) and answers
// over real gRPC, PushWorker fans the committed messages out. Checks dense seqs, exactly-once
// delivery to a gateway, idempotent retries, and a storage-writer that stops and comes back.
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <mutex>

#include "adapters/memory/memory_presence.hpp"
#include "adapters/sqlite/sqlite_store.hpp"
#include "backend/bus_factories.hpp"
#include "common/clock.hpp"
#include "domain/services.hpp"
#include "rpc/clients.hpp"
#include "rpc/pipeline.hpp"
#include "rpc/servers.hpp"

namespace flare::contract {
namespace {

// A gateway that records what it is handed, per connection, and drops seqs a connection already has
// (as WsGateway does), counting those as redeliveries.
class RecordingGateway final : public DeliverySink {
public:
    void Deliver(const MessageRecord& m, std::span<const uint64_t> ids, StatusCallback done) override {
        {
            std::lock_guard lock(mu_);
            for (uint64_t id : ids) {
                auto& last = last_[{id, m.conversation_id}];
                if (m.seq <= last) {
                    ++redelivered_;
                    continue;
                }
                last = m.seq;
                got_[id].push_back(m);
            }
        }
        cv_.notify_all();
        if (done) {
            done(Status{});
        }
    }
    void Disconnect(uint64_t, std::string, std::string) override {}

    bool WaitFor(uint64_t connection, size_t n, std::chrono::milliseconds patience) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, patience, [&] { return got_[connection].size() >= n; });
    }
    std::vector<MessageRecord> Got(uint64_t connection) {
        std::lock_guard lock(mu_);
        return got_[connection];
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::pair<uint64_t, std::string>, uint64_t> last_;
    std::map<uint64_t, std::vector<MessageRecord>> got_;
    uint64_t redelivered_ = 0;
};

template <typename Factory>
class PipelineTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = (std::filesystem::temp_directory_path() / ("flare-pipe-" + RandomHexId(6))).string();
        store_ = std::make_unique<SqliteStore>(SqliteOptions{dir_ + "/db", "normal", 64});
        store_->Start();
        factory_.CreateTopic(rpc::kAppendTopic);
        factory_.CreateTopic(rpc::kCommittedTopic);
        bus_ = factory_.Open();
        ASSERT_NE(bus_, nullptr);
        sessions_ = std::make_unique<SessionService>(*store_);
        committer_ = std::make_unique<rpc::BusCommitter>(*bus_, nullptr, rpc::BusCommitterOptions{});
        orchestrator_ = std::make_unique<MessageOrchestrator>(Limits{}, *sessions_, *store_, *committer_, clock_, ids_);
        server_.AddMessages(*orchestrator_, committer_.get());
        ASSERT_TRUE(server_.Start("127.0.0.1", 0).ok());
        committer_->set_reply_endpoint("127.0.0.1:" + std::to_string(server_.port()));
        committer_->Start();
        gateways_.Register("g1", "", &gateway_);
        push_ = std::make_unique<PushService>(presence_, gateways_);
        push_worker_ = std::make_unique<rpc::PushWorker>(*bus_, *push_);
        ASSERT_TRUE(push_worker_->Start().ok());
        StartWriter();
        ASSERT_TRUE(Register("bob", 7).ok());
    }
    void TearDown() override {
        if (push_worker_) {
            push_worker_->Stop();
        }
        if (writer_) {
            writer_->Stop();
        }
        if (committer_) {
            committer_->Stop();
        }
        server_.Stop();
        if (store_) {
            store_->Stop();  // drains: the writer's last appends still publish to the bus
        }
        bus_.reset();  // completes what is pending while the stages it calls back still exist
        std::filesystem::remove_all(dir_);
    }
    void StartWriter() {
        writer_ = std::make_unique<rpc::StorageWriter>(*bus_, *store_, replier_);
        ASSERT_TRUE(writer_->Start().ok());
    }
    Status Register(const std::string& user, uint64_t connection) {
        auto p = std::make_shared<std::promise<Status>>();
        presence_.Register(DeviceSession{"t1", user, "d-" + user, "", "g1", "", connection, 0},
                           [p](Result<std::optional<DeviceSession>> r) {
                               p->set_value(r ? Status{} : Status{r.error()});
                           });
        return p->get_future().get();
    }
    std::shared_future<Result<SendReceipt>> Send(const std::string& client_msg_id, const std::string& text) {
        auto p = std::make_shared<std::promise<Result<SendReceipt>>>();
        SendCommand c;
        c.sender = Principal{"t1", "alice", "laptop"};
        c.gateway_id = "g1";
        c.connection_id = 1;
        c.conversation_id = DirectConversationId("alice", "bob");
        c.client_msg_id = client_msg_id;
        c.text = text;
        orchestrator_->Send(std::move(c), [p](Result<SendReceipt> r) { p->set_value(std::move(r)); });
        return p->get_future().share();
    }

    Factory factory_;
    std::string dir_;
    std::unique_ptr<SqliteStore> store_;
    std::unique_ptr<EventBus> bus_;
    SystemClock clock_;
    TimeOrderedIdGenerator ids_{clock_, 3};
    std::unique_ptr<SessionService> sessions_;
    std::unique_ptr<rpc::BusCommitter> committer_;
    std::unique_ptr<MessageOrchestrator> orchestrator_;
    rpc::RpcServer server_;
    rpc::AppendReplier replier_;
    std::unique_ptr<rpc::StorageWriter> writer_;
    MemoryPresenceRegistry presence_;
    MemoryGatewayDirectory gateways_;
    RecordingGateway gateway_;
    std::unique_ptr<PushService> push_;
    std::unique_ptr<rpc::PushWorker> push_worker_;
};

TYPED_TEST_SUITE_P(PipelineTest);

// The first message creates the direct conversation; each send is answered with the next seq once
// storage-writer stored it, and bob's connection gets every message once, in order.
TYPED_TEST_P(PipelineTest, SendsAreStoredWithDenseSeqsAndPushedOnceInOrder) {
    constexpr int kN = 30;
    for (int i = 1; i <= kN; ++i) {
        auto r = this->Send("c" + std::to_string(i), "m" + std::to_string(i)).get();
        ASSERT_TRUE(r.ok()) << r.error().message;
        EXPECT_EQ(r->seq, static_cast<uint64_t>(i));
        EXPECT_FALSE(r->duplicate);
    }
    ASSERT_TRUE(this->gateway_.WaitFor(7, kN, TypeParam::kPatience));
    auto got = this->gateway_.Got(7);
    ASSERT_EQ(got.size(), static_cast<size_t>(kN));
    for (int i = 0; i < kN; ++i) {
        EXPECT_EQ(got[static_cast<size_t>(i)].seq, static_cast<uint64_t>(i + 1));
        EXPECT_EQ(got[static_cast<size_t>(i)].text, "m" + std::to_string(i + 1));
    }
    EXPECT_TRUE(this->gateway_.Got(1).empty()) << "the sending connection got its own message";
}

TYPED_TEST_P(PipelineTest, ARetryIsAnsweredWithTheOriginalAndNotPushedAgain) {
    auto first = this->Send("same", "hello").get();
    ASSERT_TRUE(first.ok()) << first.error().message;
    auto again = this->Send("same", "hello again").get();
    ASSERT_TRUE(again.ok()) << again.error().message;
    EXPECT_TRUE(again->duplicate);
    EXPECT_EQ(again->seq, first->seq);
    EXPECT_EQ(again->server_msg_id, first->server_msg_id);
    auto next = this->Send("other", "next").get();
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(next->seq, first->seq + 1);
    ASSERT_TRUE(this->gateway_.WaitFor(7, 2, TypeParam::kPatience));
    auto got = this->gateway_.Got(7);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].text, "hello");
    EXPECT_EQ(got[1].text, "next");
}

// Sends made while storage-writer is down wait on the bus; a new storage-writer stores them in order.
TYPED_TEST_P(PipelineTest, SendsWaitForAStorageWriterThatComesBack) {
    ASSERT_TRUE(this->Send("c0", "before").get().ok());
    this->writer_->Stop();
    this->writer_.reset();
    std::vector<std::shared_future<Result<SendReceipt>>> waiting;
    for (int i = 1; i <= 5; ++i) {
        waiting.push_back(this->Send("c" + std::to_string(i), "while down " + std::to_string(i)));
    }
    EXPECT_EQ(waiting[0].wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
        << "answered with nobody storing";
    this->StartWriter();
    for (int i = 0; i < 5; ++i) {
        auto r = waiting[static_cast<size_t>(i)].get();
        if (!r.ok()) {
            // The 5 s wait ran out (Kafka's group join is slow): the client's retry is answered.
            ASSERT_EQ(r.error().reason, "storage_timeout") << r.error().message;
            r = this->Send("c" + std::to_string(i + 1), "while down " + std::to_string(i + 1)).get();
            ASSERT_TRUE(r.ok()) << r.error().message;
        }
        EXPECT_EQ(r->seq, static_cast<uint64_t>(i + 2));
    }
    ASSERT_TRUE(this->gateway_.WaitFor(7, 6, TypeParam::kPatience));
    auto got = this->gateway_.Got(7);
    ASSERT_EQ(got.size(), 6u);
    for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].seq, i + 1);
    }
}

// An unknown conversation is refused by storage and the sender is told; nothing is pushed.
TYPED_TEST_P(PipelineTest, ARefusedAppendReachesTheSender) {
    SendCommand c;
    c.sender = Principal{"t1", "", ""};
    c.conversation_id = "room:nowhere";
    c.client_msg_id = "x";
    c.text = "into the void";
    c.check_membership = false;
    auto p = std::make_shared<std::promise<Result<SendReceipt>>>();
    this->orchestrator_->Send(std::move(c), [p](Result<SendReceipt> r) { p->set_value(std::move(r)); });
    auto r = p->get_future().get();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kNotFound);
}

// The checks storage-writer makes again in its transaction travel with the append over the bus:
// a removed sender, a role too low, a group past its size.
TYPED_TEST_P(PipelineTest, TheStoresChecksTravelOverTheBus) {
    auto commit = [&](AppendRequest req) {
        auto p = std::make_shared<std::promise<Result<AppendResult>>>();
        FanoutPlan plan{std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"alice", "bob"}),
                        "", 0};
        this->committer_->Commit(std::move(req), std::move(plan),
                                 [p](Result<AppendResult> r) { p->set_value(std::move(r)); }, nullptr);
        return p->get_future().get();
    };
    auto event = [](const std::string& sender, const std::string& cid, EventType type, std::vector<std::string> users) {
        AppendRequest req;
        req.message.tenant_id = "t1";
        req.message.conversation_id = "group:g";
        req.message.conversation_type = ConversationType::kGroup;
        req.message.server_msg_id = "s-" + cid;
        req.message.client_msg_id = cid;
        req.message.sender_id = sender;
        req.message.server_time_ms = 1000;
        req.message.kind = MessageKind::kEvent;
        req.message.event.type = type;
        req.message.event.user_ids = std::move(users);
        return req;
    };
    AppendRequest create = event("alice", "create", EventType::kGroupCreated, {"alice", "bob"});
    create.create_with_members = {"alice", "bob"};
    ASSERT_TRUE(commit(create).ok());
    AppendRequest stranger = event("mallory", "m1", EventType::kMembersAdded, {"eve"});
    stranger.message.kind = MessageKind::kText;
    stranger.message.text = "let me in";
    stranger.check_sender = true;
    auto r = commit(stranger);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().reason, "not_member");
    AppendRequest by_member = event("bob", "add-1", EventType::kMembersAdded, {"carol"});
    by_member.check_sender = true;
    by_member.min_sender_role = MemberRole::kAdmin;
    r = commit(by_member);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().reason, "insufficient_role");
    AppendRequest too_many = event("alice", "add-2", EventType::kMembersAdded, {"carol", "dave"});
    too_many.check_sender = true;
    too_many.max_members = 3;
    r = commit(too_many);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().reason, "group_full");
    AppendRequest remove_owner = event("bob", "rm", EventType::kMembersRemoved, {"alice"});
    remove_owner.targets_below = MemberRole::kMember;
    r = commit(remove_owner);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().reason, "insufficient_role");
}

REGISTER_TYPED_TEST_SUITE_P(PipelineTest, SendsAreStoredWithDenseSeqsAndPushedOnceInOrder,
                            ARetryIsAnsweredWithTheOriginalAndNotPushedAgain, SendsWaitForAStorageWriterThatComesBack,
                            ARefusedAppendReachesTheSender, TheStoresChecksTravelOverTheBus);

INSTANTIATE_TYPED_TEST_SUITE_P(MemoryBusPipeline, PipelineTest, MemoryFactory);
INSTANTIATE_TYPED_TEST_SUITE_P(NatsBusPipeline, PipelineTest, NatsFactory);
INSTANTIATE_TYPED_TEST_SUITE_P(KafkaBusPipeline, PipelineTest, KafkaFactory);

}  // namespace
}  // namespace flare::contract
