// The EventBus contract (tests/contract/event_bus_contract.hpp) for the memory, NATS JetStream and Kafka
// adapters, plus what only one adapter has: unreachable brokers, brokers that do not answer, shutdown with
// publishes in flight, and a consumer process restarting. NATS is the `infra` fixture's server; Kafka is
// librdkafka's mock cluster, created inside this process.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <nats/nats.h>

#include <future>

#include "adapters/kafka/kafka_event_bus.hpp"
#include "adapters/memory/memory_event_bus.hpp"
#include "adapters/nats/nats_event_bus.hpp"
#include "backend/backend_env.hpp"
#include "backend/bus_factories.hpp"
#include "contract/event_bus_contract.hpp"

namespace flare::contract {
namespace {

using Clock = std::chrono::steady_clock;

INSTANTIATE_TYPED_TEST_SUITE_P(MemoryBus, EventBusContract, MemoryFactory);
INSTANTIATE_TYPED_TEST_SUITE_P(NatsBus, EventBusContract, NatsFactory);
INSTANTIATE_TYPED_TEST_SUITE_P(KafkaBus, EventBusContract, KafkaFactory);

// --- memory ---

TEST(MemoryEventBus, StopRefusesPublishesAndSubscriptions) {
    MemoryEventBus bus;
    RecordLog log;
    auto sub = bus.Subscribe("t", "g", [&log](const BusRecord& r, BusAck ack) {
        log.Add(r, 0);
        ack(Status{});
    });
    ASSERT_TRUE(sub.ok());
    ASSERT_TRUE(AwaitPublish(bus, "t", "k", "x").ok());
    ASSERT_TRUE(log.WaitForCount(1, std::chrono::milliseconds(5000)));
    bus.Stop();
    Status s = AwaitPublish(bus, "t", "k", "y");
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, Errc::kUnavailable);
    EXPECT_EQ(s.error().reason, "bus_unavailable");
    auto again = bus.Subscribe("t", "g", [](const BusRecord&, BusAck) {});
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().code, Errc::kUnavailable);
    (*sub)->Stop();  // after the bus stopped it: a no-op
}

TEST(MemoryEventBus, StopFromInsideTheHandlerReturns) {
    MemoryEventBus bus;
    std::promise<void> stopped;
    std::unique_ptr<BusSubscription> sub;
    std::mutex mu;
    auto r = bus.Subscribe("t", "g", [&](const BusRecord&, BusAck ack) {
        std::lock_guard lock(mu);
        sub->Stop();
        stopped.set_value();
    });
    ASSERT_TRUE(r.ok());
    {
        std::lock_guard lock(mu);
        sub = std::move(*r);
    }
    ASSERT_TRUE(AwaitPublish(bus, "t", "k", "x").ok());
    ASSERT_EQ(stopped.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
}

// --- NATS JetStream ---

// libnats 3.4 crashed when a bus that never published was stopped (its async-publish list did not
// exist yet); a consumer-only process such as push-server is exactly that.
TEST(NatsEventBus, StoppingABusThatNeverPublishedIsClean) {
    const std::string url = test::BackendUrl("FLARE_TEST_NATS_URL");
    ASSERT_FALSE(url.empty());
    NatsEventBus bus(NatsTestOptions(url, test::UniqueName("flaretest")));
    ASSERT_TRUE(bus.Start().ok());
    auto sub = bus.Subscribe("quiet", "g", [](const BusRecord&, BusAck ack) { ack(Status{}); });
    ASSERT_TRUE(sub.ok()) << sub.error().message;
    (*sub)->Stop();
    bus.Stop();
    Status s = AwaitPublish(bus, "quiet", "k", "x");
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, Errc::kUnavailable);
}

TEST(NatsEventBus, UnreachableServerIsUnavailableNamingTheUrl) {
    NatsEventBusOptions o;
    o.url = "nats://127.0.0.1:1";
    o.connect_timeout = std::chrono::milliseconds(1000);
    NatsEventBus bus(o);
    auto t0 = Clock::now();
    Status st = bus.Start();
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, Errc::kUnavailable);
    EXPECT_EQ(st.error().reason, "bus_unavailable");
    EXPECT_NE(st.error().message.find("nats://127.0.0.1:1"), std::string::npos) << st.error().message;
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
    Status p = AwaitPublish(bus, "t", "k", "x");
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.error().code, Errc::kUnavailable);
}

// A plain NATS subscriber on the bus's subjects swallows the publishes without answering, like a broker
// that stopped responding.
TEST(NatsEventBus, UnansweredPublishTimesOutAndStopCompletesTheRest) {
    FLARE_REQUIRE_BACKEND(url, "FLARE_TEST_NATS_URL");
    const std::string prefix = test::UniqueName("flaretest");
    natsConnection* nc = nullptr;
    ASSERT_EQ(natsConnection_ConnectTo(&nc, url.c_str()), NATS_OK);
    natsSubscription* silent = nullptr;
    ASSERT_EQ(natsConnection_SubscribeSync(&silent, nc, (prefix + ".>").c_str()), NATS_OK);
    ASSERT_EQ(natsConnection_Flush(nc), NATS_OK);

    auto o = NatsTestOptions(url, prefix);
    o.create_streams = false;  // the streams are someone else's; nothing answers for these subjects
    o.publish_timeout = std::chrono::milliseconds(300);
    {
        NatsEventBus bus(o);
        ASSERT_TRUE(bus.Start().ok());
        auto t0 = Clock::now();
        Status s = AwaitPublish(bus, "silent", "k", "x");
        ASSERT_FALSE(s.ok());
        EXPECT_EQ(s.error().code, Errc::kDeadlineExceeded) << s.error().message;
        EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
    }
    o.publish_timeout = std::chrono::milliseconds(60000);
    NatsEventBus bus(o);
    ASSERT_TRUE(bus.Start().ok());
    auto p = std::make_shared<std::promise<Status>>();
    auto f = p->get_future();
    bus.Publish("silent", "k", "x", [p](Status s) { p->set_value(std::move(s)); });
    ASSERT_EQ(f.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
    auto t0 = Clock::now();
    bus.Stop();
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
    ASSERT_EQ(f.wait_for(std::chrono::seconds(1)), std::future_status::ready);
    Status s = f.get();
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, Errc::kUnavailable);
    EXPECT_EQ(s.error().reason, "bus_unavailable");

    natsSubscription_Destroy(silent);
    natsConnection_Destroy(nc);
}

TEST(NatsEventBus, ConsumerRestartResumesTheGroupWhereItsAcknowledgementsEnded) {
    NatsFactory factory;
    auto bus1 = factory.Open();
    ASSERT_NE(bus1, nullptr);
    const std::string topic = "restart_" + RandomHexId(4);
    PublishTracker published;
    for (int i = 0; i < 20; ++i) {
        bus1->Publish(topic, "k", "r" + std::to_string(i), published.Callback());
    }
    ASSERT_TRUE(published.AllOk(NatsFactory::kPatience));

    RecordLog first;
    std::mutex mu;
    BusAck held;
    auto sub1 = bus1->Subscribe(topic, "restart-group", [&](const BusRecord& r, BusAck ack) {
        if (r.payload == "r8") {
            std::lock_guard lock(mu);
            held = std::move(ack);
        } else {
            ack(Status{});
        }
        first.Add(r, 1);
    });
    ASSERT_TRUE(sub1.ok()) << sub1.error().message;
    ASSERT_TRUE(first.WaitForCount(9, NatsFactory::kPatience)) << first.Size();
    // The consumer process goes away: its subscription and connection with it.
    sub1->reset();
    bus1.reset();
    {
        std::lock_guard lock(mu);
        ASSERT_TRUE(held);
        held(Status{});
    }

    auto bus2 = factory.Open();
    ASSERT_NE(bus2, nullptr);
    RecordLog second;
    auto sub2 = bus2->Subscribe(topic, "restart-group", [&second](const BusRecord& r, BusAck ack) {
        second.Add(r, 2);
        ack(Status{});
    });
    ASSERT_TRUE(sub2.ok()) << sub2.error().message;
    ASSERT_TRUE(second.WaitForCount(12, NatsFactory::kPatience)) << second.Size();
    ASSERT_TRUE(AwaitPublish(*bus2, topic, "k", "r20").ok());
    ASSERT_TRUE(second.WaitForCount(13, NatsFactory::kPatience)) << second.Size();
    EXPECT_FALSE(second.WaitForCount(14, std::chrono::milliseconds(300)));
    (*sub2)->Stop();
    auto entries = second.Snapshot();
    for (size_t i = 0; i < entries.size(); ++i) {
        EXPECT_EQ(entries[i].record.payload, "r" + std::to_string(8 + i));
    }
    EXPECT_EQ(entries[0].record.delivery_attempt, 2u);
}

// --- Kafka (librdkafka mock cluster) ---

TEST(KafkaEventBus, UnreachableBrokerIsUnavailableNamingTheServers) {
    KafkaEventBusOptions o;
    o.bootstrap_servers = "127.0.0.1:1";
    o.connect_timeout = std::chrono::milliseconds(1000);
    KafkaEventBus bus(o);
    auto t0 = Clock::now();
    Status st = bus.Start();
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, Errc::kUnavailable);
    EXPECT_EQ(st.error().reason, "bus_unavailable");
    EXPECT_NE(st.error().message.find("127.0.0.1:1"), std::string::npos) << st.error().message;
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
    Status p = AwaitPublish(bus, "t", "k", "x");
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.error().code, Errc::kUnavailable);
}

TEST(KafkaEventBus, BrokerDownPublishTimesOutAndStopCompletesTheRest) {
    MockKafka mock;
    mock.CreateTopic("down", 2);
    auto o = KafkaTestOptions(mock.bootstraps());
    o.publish_timeout = std::chrono::milliseconds(1000);
    KafkaEventBus bus(o);
    ASSERT_TRUE(bus.Start().ok());
    ASSERT_TRUE(AwaitPublish(bus, "down", "k", "before").ok());
    ASSERT_EQ(rd_kafka_mock_broker_set_down(mock.cluster(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    auto t0 = Clock::now();
    Status s = AwaitPublish(bus, "down", "k", "x");
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, Errc::kDeadlineExceeded) << s.error().message;
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));

    o.publish_timeout = std::chrono::milliseconds(60000);
    KafkaEventBus patient(o);
    ASSERT_EQ(rd_kafka_mock_broker_set_up(mock.cluster(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_TRUE(patient.Start().ok());
    ASSERT_EQ(rd_kafka_mock_broker_set_down(mock.cluster(), 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    auto p = std::make_shared<std::promise<Status>>();
    auto f = p->get_future();
    patient.Publish("down", "k", "y", [p](Status st) { p->set_value(std::move(st)); });
    ASSERT_EQ(f.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
    t0 = Clock::now();
    patient.Stop();
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
    ASSERT_EQ(f.wait_for(std::chrono::seconds(1)), std::future_status::ready);
    Status late = f.get();
    ASSERT_FALSE(late.ok());
    EXPECT_EQ(late.error().code, Errc::kUnavailable);
    EXPECT_EQ(late.error().reason, "bus_unavailable");
}

TEST(KafkaEventBus, SubscribingToAMissingTopicFails) {
    MockKafka mock;
    KafkaEventBus bus(KafkaTestOptions(mock.bootstraps()));
    ASSERT_TRUE(bus.Start().ok());
    auto sub = bus.Subscribe("no_such_topic", "g", [](const BusRecord&, BusAck ack) { ack(Status{}); });
    ASSERT_FALSE(sub.ok());
    EXPECT_EQ(sub.error().code, Errc::kFailedPrecondition);
    EXPECT_EQ(sub.error().reason, "unknown_topic");
}

}  // namespace
}  // namespace flare::contract
