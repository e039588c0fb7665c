// Bus factories shared by the backend tests: the in-process bus, NATS JetStream (the `infra` fixture's
// server) and a Kafka-protocol mock cluster of librdkafka held by the test process.
#pragma once

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <future>

#include "adapters/kafka/kafka_event_bus.hpp"
#include "adapters/memory/memory_event_bus.hpp"
#include "adapters/nats/nats_event_bus.hpp"
#include "backend/backend_env.hpp"

namespace flare::contract {

inline Status AwaitPublish(EventBus& bus, const std::string& topic, const std::string& key, const std::string& payload) {
    auto p = std::make_shared<std::promise<Status>>();
    auto f = p->get_future();
    bus.Publish(topic, key, payload, [p](Status s) { p->set_value(std::move(s)); });
    return f.get();
}

// A Kafka-protocol mock cluster of one broker, alive as long as this object.
class MockKafka {
public:
    MockKafka() {
        char err[512];
        rd_kafka_conf_t* conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
        rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (rk_ == nullptr) {
            ADD_FAILURE() << "rd_kafka_new: " << err;
            return;
        }
        cluster_ = rd_kafka_mock_cluster_new(rk_, 1);
        if (cluster_ == nullptr) {
            ADD_FAILURE() << "rd_kafka_mock_cluster_new failed";
            return;
        }
        bootstraps_ = rd_kafka_mock_cluster_bootstraps(cluster_);
    }
    ~MockKafka() {
        if (cluster_ != nullptr) {
            rd_kafka_mock_cluster_destroy(cluster_);
        }
        if (rk_ != nullptr) {
            rd_kafka_destroy(rk_);
        }
    }
    const std::string& bootstraps() const { return bootstraps_; }
    rd_kafka_mock_cluster_t* cluster() { return cluster_; }
    void CreateTopic(const std::string& topic, int partitions) {
        ASSERT_NE(cluster_, nullptr);
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, 1);
        ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
    }

private:
    rd_kafka_t* rk_ = nullptr;
    rd_kafka_mock_cluster_t* cluster_ = nullptr;
    std::string bootstraps_;
};

inline KafkaEventBusOptions KafkaTestOptions(const std::string& bootstraps) {
    KafkaEventBusOptions o;
    o.bootstrap_servers = bootstraps;
    o.group_prefix = test::UniqueName("flaretest") + ".";
    o.session_timeout = std::chrono::milliseconds(3000);  // the mock waits this long for a group to settle
    o.heartbeat_interval = std::chrono::milliseconds(300);
    o.retry_backoff = std::chrono::milliseconds(20);
    o.publish_timeout = std::chrono::milliseconds(10000);
    return o;
}

inline NatsEventBusOptions NatsTestOptions(const std::string& url, const std::string& prefix) {
    NatsEventBusOptions o;
    o.url = url;
    o.subject_prefix = prefix;
    o.fetch_wait = std::chrono::milliseconds(200);
    o.retry_backoff = std::chrono::milliseconds(20);
    return o;
}

struct MemoryFactory {
    static constexpr std::chrono::milliseconds kPatience{10000};
    static constexpr bool kCountsDeliveries = true;
    std::unique_ptr<EventBus> Open() {
        MemoryEventBusOptions o;
        o.retry_backoff = std::chrono::milliseconds(20);
        return std::make_unique<MemoryEventBus>(o);
    }
    void CreateTopic(const std::string&) {}
};

struct NatsFactory {
    static constexpr std::chrono::milliseconds kPatience{20000};
    static constexpr bool kCountsDeliveries = true;
    std::string prefix = test::UniqueName("flaretest");
    std::unique_ptr<EventBus> Open() {
        std::string url = test::BackendUrl("FLARE_TEST_NATS_URL");
        if (url.empty()) {
            return nullptr;
        }
        auto bus = std::make_unique<NatsEventBus>(NatsTestOptions(url, prefix));
        Status st = bus->Start();
        if (!st.ok()) {
            ADD_FAILURE() << st.error().message;
            return nullptr;
        }
        return bus;
    }
    void CreateTopic(const std::string&) {}  // the bus creates streams itself
};

struct KafkaFactory {
    static constexpr std::chrono::milliseconds kPatience{30000};  // group joins take seconds on the mock
    static constexpr bool kCountsDeliveries = false;              // Kafka does not count deliveries across members
    MockKafka mock;
    std::unique_ptr<EventBus> Open() {
        auto bus = std::make_unique<KafkaEventBus>(KafkaTestOptions(mock.bootstraps()));
        Status st = bus->Start();
        if (!st.ok()) {
            ADD_FAILURE() << st.error().message;
            return nullptr;
        }
        return bus;
    }
    void CreateTopic(const std::string& topic) { mock.CreateTopic(topic, 8); }
};

}  // namespace flare::contract
