// KafkaEventBus on librdkafka 2.0. The producer's delivery reports run on the bus's poll thread and carry
// the heap-allocated `done` as message opaque, so each runs exactly once (librdkafka reports every
// message, also purged ones at shutdown). Each subscription's poll thread owns its consumer: it queues
// fetched records per partition, hands out the head of a partition only when nothing of that partition is
// in flight, commits acknowledged offsets, and keeps a failed record at the head until a retry succeeds.
#include "adapters/kafka/kafka_event_bus.hpp"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>

namespace flare {
namespace {

using SteadyClock = std::chrono::steady_clock;

Error Unavailable(std::string message) { return MakeError(Errc::kUnavailable, "bus_unavailable", std::move(message)); }

Status FromDelivery(rd_kafka_resp_err_t err, const std::string& where) {
    switch (err) {
        case RD_KAFKA_RESP_ERR_NO_ERROR:
            return Status{};
        case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        case RD_KAFKA_RESP_ERR__TIMED_OUT:
        case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
            return MakeError(
                Errc::kDeadlineExceeded, "bus_timeout",
                "Kafka at " + where + " did not acknowledge the publish in time: " + rd_kafka_err2str(err));
        case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
        case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
            return Unavailable("the Kafka event bus was stopped before " + where + " acknowledged the publish");
        default:
            return Unavailable("Kafka at " + where + " refused the publish: " + rd_kafka_err2str(err));
    }
}

void LogFromKafka(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
    if (level <= 3) {
        spdlog::error("kafka {}: {}: {}", rd_kafka_name(rk), fac, buf);
    } else if (level == 4) {
        spdlog::warn("kafka {}: {}: {}", rd_kafka_name(rk), fac, buf);
    } else if (level <= 6) {
        spdlog::info("kafka {}: {}: {}", rd_kafka_name(rk), fac, buf);
    } else {
        spdlog::debug("kafka {}: {}: {}", rd_kafka_name(rk), fac, buf);
    }
}

// Builds a configuration; on failure returns nullptr and sets `error`.
rd_kafka_conf_t* MakeConf(const std::vector<std::pair<std::string, std::string>>& settings, std::string* error) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[512];
    for (const auto& [name, value] : settings) {
        if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
            *error = "Kafka setting " + name + "=" + value + ": " + err;
            rd_kafka_conf_destroy(conf);
            return nullptr;
        }
    }
    rd_kafka_conf_set_log_cb(conf, &LogFromKafka);
    return conf;
}

struct AckEvent {
    int32_t partition;
    uint64_t epoch;
    uint64_t serial;
    Status status;
};

struct PartitionState {
    uint64_t epoch = 0;  // which assignment of the partition this is; acks of an earlier one are stale
    std::deque<rd_kafka_message_t*> queue;  // fetched, not yet acknowledged; front is next or in flight
    bool in_flight = false;
    uint64_t serial = 0;
    uint32_t attempt = 0;  // hand-outs of the front record so far
    SteadyClock::time_point not_before{};
    bool paused = false;
    int64_t commit = -1;  // offset to commit (next record to read), -1 when nothing new
};

class KafkaSubscription final : public BusSubscription, public std::enable_shared_from_this<KafkaSubscription> {
public:
    KafkaSubscription(KafkaEventBusOptions options, std::string topic, BusHandler handler)
        : options_(std::move(options)), topic_(std::move(topic)), handler_(std::move(handler)) {}

    // Takes ownership of the consumer, whose rebalance callback has this object as opaque.
    void Attach(rd_kafka_t* rk) {
        std::lock_guard lock(mu_);
        rk_ = rk;
        consumer_queue_ = rd_kafka_queue_get_consumer(rk_);
    }

    ~KafkaSubscription() override {
        if (consumer_queue_ != nullptr) {
            rd_kafka_queue_destroy(consumer_queue_);
        }
        if (rk_ != nullptr) {
            rd_kafka_destroy(rk_);
        }
    }

    void StartThread() {
        std::lock_guard lock(mu_);
        thread_ = std::thread([self = shared_from_this()] { self->Run(); });
        thread_id_ = thread_.get_id();
    }

    void Stop() override {
        std::thread worker;
        {
            std::unique_lock lock(mu_);
            stop_ = true;
            if (consumer_queue_ != nullptr) {
                rd_kafka_queue_yield(consumer_queue_);
            }
            worker = std::move(thread_);
            if (!worker.joinable()) {
                if (thread_id_ != std::this_thread::get_id()) {
                    cv_.wait(lock, [&] { return exited_ || thread_id_ == std::thread::id{}; });
                }
                return;
            }
        }
        if (worker.get_id() == std::this_thread::get_id()) {
            worker.detach();  // Stop() from inside the handler: the loop ends when the handler returns
            return;
        }
        worker.join();
    }

    static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                            void* opaque) {
        static_cast<KafkaSubscription*>(opaque)->Rebalance(rk, err, parts);
    }

private:
    void PushAck(AckEvent ev) {
        std::lock_guard lock(mu_);
        if (stop_) {
            return;  // not acknowledged before Stop(): the group gets the record again
        }
        acks_.push_back(std::move(ev));
        if (consumer_queue_ != nullptr) {
            rd_kafka_queue_yield(consumer_queue_);
        }
    }

    SteadyClock::duration Backoff(uint32_t attempt) const {
        auto d = options_.retry_backoff;
        for (uint32_t i = 1; i < attempt && d < options_.max_retry_backoff; ++i) {
            d *= 2;
        }
        return std::min(d, options_.max_retry_backoff);
    }

    void SetPaused(int32_t partition, PartitionState& ps, bool paused) {
        if (ps.paused == paused) {
            return;
        }
        rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, topic_.c_str(), partition);
        if (paused) {
            rd_kafka_pause_partitions(rk_, list);
        } else {
            rd_kafka_resume_partitions(rk_, list);
        }
        rd_kafka_topic_partition_list_destroy(list);
        ps.paused = paused;
    }

    // Applies acknowledgements on the poll thread; returns whether any changed state.
    bool ApplyAcks() {
        std::vector<AckEvent> acks;
        {
            std::lock_guard lock(mu_);
            acks.swap(acks_);
        }
        bool changed = false;
        for (AckEvent& ev : acks) {
            auto it = parts_.find(ev.partition);
            if (it == parts_.end() || it->second.epoch != ev.epoch) {
                continue;  // from before a rebalance: the record belongs to the partition's new owner
            }
            PartitionState& ps = it->second;
            if (!ps.in_flight || ps.serial != ev.serial || ps.queue.empty()) {
                continue;  // settled already
            }
            ps.in_flight = false;
            changed = true;
            if (ev.status.ok()) {
                rd_kafka_message_t* msg = ps.queue.front();
                ps.queue.pop_front();
                ps.commit = msg->offset + 1;
                rd_kafka_message_destroy(msg);
                ps.attempt = 0;
                ps.not_before = {};
                if (ps.paused && ps.queue.size() <= options_.max_queued_per_partition / 2) {
                    SetPaused(ev.partition, ps, false);
                }
            } else {
                ps.not_before = SteadyClock::now() + Backoff(ps.attempt);
            }
        }
        return changed;
    }

    // Commits acknowledged offsets of `only` (or of every partition when null).
    void Commit(bool async, const rd_kafka_topic_partition_list_t* only = nullptr) {
        rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(parts_.size()));
        for (auto& [partition, ps] : parts_) {
            if (ps.commit < 0) {
                continue;
            }
            if (only != nullptr && rd_kafka_topic_partition_list_find(only, topic_.c_str(), partition) == nullptr) {
                continue;
            }
            rd_kafka_topic_partition_list_add(list, topic_.c_str(), partition)->offset = ps.commit;
            ps.commit = -1;
        }
        if (list->cnt > 0) {
            rd_kafka_resp_err_t err = rd_kafka_commit(rk_, list, async ? 1 : 0);
            if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                spdlog::warn("kafka bus: committing offsets of {} failed: {}; the records will be delivered again",
                             topic_, rd_kafka_err2str(err));
            }
        }
        rd_kafka_topic_partition_list_destroy(list);
    }

    // Hands out the head of every idle partition; returns whether any was handed out.
    bool Dispatch(SteadyClock::time_point* wake) {
        bool any = false;
        const auto now = SteadyClock::now();
        for (auto& [partition, ps] : parts_) {
            if (ps.in_flight || ps.queue.empty()) {
                continue;
            }
            if (ps.not_before > now) {
                *wake = std::min(*wake, ps.not_before);
                continue;
            }
            if (Stopping()) {
                return any;
            }
            rd_kafka_message_t* msg = ps.queue.front();
            ps.in_flight = true;
            const uint64_t serial = ++ps.serial;
            ++ps.attempt;
            BusRecord record;
            record.topic = topic_;
            if (msg->key != nullptr) {
                record.key.assign(static_cast<const char*>(msg->key), msg->key_len);
            }
            if (msg->payload != nullptr) {
                record.payload.assign(static_cast<const char*>(msg->payload), msg->len);
            }
            record.delivery_attempt = ps.attempt;
            BusAck ack = [weak = weak_from_this(), partition = partition, epoch = ps.epoch, serial](Status status) {
                if (auto self = weak.lock()) {
                    self->PushAck(AckEvent{partition, epoch, serial, std::move(status)});
                }
            };
            handler_(record, std::move(ack));
            any = true;
        }
        return any;
    }

    bool Stopping() {
        std::lock_guard lock(mu_);
        return stop_;
    }

    void Accept(rd_kafka_message_t* msg) {
        if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                spdlog::warn("kafka bus: consumer of {}: {}", topic_, rd_kafka_message_errstr(msg));
            }
            rd_kafka_message_destroy(msg);
            return;
        }
        auto it = parts_.find(msg->partition);
        if (it == parts_.end()) {
            rd_kafka_message_destroy(msg);  // partition no longer ours
            return;
        }
        it->second.queue.push_back(msg);
        if (it->second.queue.size() >= options_.max_queued_per_partition) {
            SetPaused(msg->partition, it->second, true);
        }
    }

    void DropPartition(int32_t partition) {
        auto it = parts_.find(partition);
        if (it == parts_.end()) {
            return;
        }
        for (rd_kafka_message_t* msg : it->second.queue) {
            rd_kafka_message_destroy(msg);
        }
        parts_.erase(it);
    }

    void Rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts) {
        const bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
            for (int i = 0; i < parts->cnt; ++i) {
                auto [it, inserted] = parts_.try_emplace(parts->elems[i].partition);
                if (inserted) {
                    it->second.epoch = ++epochs_;
                }
            }
            if (cooperative) {
                rd_kafka_error_t* e = rd_kafka_incremental_assign(rk, parts);
                if (e != nullptr) {
                    spdlog::warn("kafka bus: incremental assign failed: {}", rd_kafka_error_string(e));
                    rd_kafka_error_destroy(e);
                }
            } else {
                rd_kafka_assign(rk, parts);
            }
            return;
        }
        // Revoked (or an error): make what was acknowledged durable before another member takes over.
        ApplyAcks();
        if (cooperative) {
            Commit(false, parts);
            for (int i = 0; i < parts->cnt; ++i) {
                DropPartition(parts->elems[i].partition);
            }
            rd_kafka_error_t* e = rd_kafka_incremental_unassign(rk, parts);
            if (e != nullptr) {
                rd_kafka_error_destroy(e);
            }
            return;
        }
        Commit(false);  // eager: the whole assignment goes
        while (!parts_.empty()) {
            DropPartition(parts_.begin()->first);
        }
        rd_kafka_assign(rk, nullptr);
    }

    void Run() {
        while (!Stopping()) {
            auto wake = SteadyClock::now() + std::chrono::milliseconds(100);
            // Inline acknowledgements let a burst of records through without waiting on the poll.
            for (int round = 0; round < 1000; ++round) {
                bool acked = ApplyAcks();
                bool handed = Dispatch(&wake);
                if (!acked && !handed) {
                    break;
                }
            }
            Commit(true);
            int timeout_ms = 0;
            {
                std::lock_guard lock(mu_);
                if (acks_.empty() && !stop_) {
                    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(wake - SteadyClock::now());
                    timeout_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 0, 100));
                }
            }
            rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk_, timeout_ms);
            for (int n = 0; msg != nullptr && n < 500; ++n) {
                Accept(msg);
                msg = rd_kafka_consumer_poll(rk_, 0);
            }
            if (msg != nullptr) {
                Accept(msg);
            }
        }
        // Acknowledged before Stop(): commit synchronously, then leave the group (which revokes).
        ApplyAcks();
        Commit(false);
        rd_kafka_consumer_close(rk_);
        for (auto& [partition, ps] : parts_) {
            for (rd_kafka_message_t* msg : ps.queue) {
                rd_kafka_message_destroy(msg);
            }
        }
        parts_.clear();
        std::lock_guard lock(mu_);
        exited_ = true;
        cv_.notify_all();
    }

    const KafkaEventBusOptions options_;
    rd_kafka_t* rk_ = nullptr;
    rd_kafka_queue_t* consumer_queue_ = nullptr;
    std::string topic_;
    BusHandler handler_;

    // Poll thread only.
    std::map<int32_t, PartitionState> parts_;
    uint64_t epochs_ = 0;

    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    bool exited_ = false;
    std::vector<AckEvent> acks_;
    std::thread thread_;
    std::thread::id thread_id_;
};

// What the caller owns; the bus keeps only a weak reference, so that its Stop() can end the subscription.
class SubscriptionHandle final : public BusSubscription {
public:
    explicit SubscriptionHandle(std::shared_ptr<KafkaSubscription> s) : s_(std::move(s)) {}
    ~SubscriptionHandle() override { s_->Stop(); }
    void Stop() override { s_->Stop(); }

private:
    std::shared_ptr<KafkaSubscription> s_;
};

}  // namespace

struct KafkaEventBus::Impl : std::enable_shared_from_this<KafkaEventBus::Impl> {
    explicit Impl(KafkaEventBusOptions o) : options(std::move(o)) {}
    ~Impl() {
        if (producer != nullptr) {
            rd_kafka_destroy(producer);
        }
    }

    std::vector<std::pair<std::string, std::string>> BaseSettings() const {
        std::vector<std::pair<std::string, std::string>> s = {
            {"bootstrap.servers", options.bootstrap_servers},
            {"client.id", options.client_id},
            {"socket.connection.setup.timeout.ms",
             std::to_string(std::max<int64_t>(1000, options.connect_timeout.count()))},
        };
        s.insert(s.end(), options.extra_config.begin(), options.extra_config.end());
        return s;
    }

    static void OnDelivery(rd_kafka_t* rk, const rd_kafka_message_t* msg, void* opaque) {
        auto* done = static_cast<StatusCallback*>(msg->_private);
        if (done == nullptr) {
            return;
        }
        auto* impl = static_cast<Impl*>(opaque);
        (*done)(FromDelivery(msg->err, impl->options.bootstrap_servers));
        delete done;
    }

    Status Start() {
        std::unique_lock lock(mu);
        if (started || stopped) {
            return MakeError(Errc::kFailedPrecondition, "already_started", "KafkaEventBus::Start called twice");
        }
        auto settings = BaseSettings();
        settings.insert(settings.begin() + 3,
                        {
                            {"enable.idempotence", "true"},
                            {"acks", "all"},
                            {"partitioner", "murmur2_random"},
                            {"linger.ms", "2"},
                            {"message.timeout.ms", std::to_string(options.publish_timeout.count())},
                        });
        std::string error;
        rd_kafka_conf_t* conf = MakeConf(settings, &error);
        if (conf == nullptr) {
            return MakeError(Errc::kInvalidArgument, "invalid_kafka_config", error);
        }
        rd_kafka_conf_set_dr_msg_cb(conf, &Impl::OnDelivery);
        rd_kafka_conf_set_opaque(conf, this);
        char err[512];
        producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (producer == nullptr) {
            rd_kafka_conf_destroy(conf);
            return MakeError(Errc::kInvalidArgument, "invalid_kafka_config", std::string("Kafka producer: ") + err);
        }
        const rd_kafka_metadata_t* md = nullptr;
        rd_kafka_resp_err_t e =
            rd_kafka_metadata(producer, 0, nullptr, &md, static_cast<int>(options.connect_timeout.count()));
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_destroy(producer);
            producer = nullptr;
            return Unavailable("Kafka at " + options.bootstrap_servers + " is unreachable: " + rd_kafka_err2str(e));
        }
        rd_kafka_metadata_destroy(md);
        started = true;
        poll_thread = std::thread([this] {
            while (!poll_stop.load()) {
                rd_kafka_poll(producer, 100);
            }
        });
        return Status{};
    }

    void Stop() {
        std::vector<std::shared_ptr<KafkaSubscription>> subs;
        {
            std::unique_lock lock(mu);
            if (stopped) {
                return;
            }
            stopped = true;
            for (auto& w : subscriptions) {
                if (auto s = w.lock()) {
                    subs.push_back(std::move(s));
                }
            }
            subscriptions.clear();
        }
        for (auto& s : subs) {
            s->Stop();
        }
        if (producer == nullptr) {
            return;
        }
        poll_stop = true;
        if (poll_thread.joinable()) {
            poll_thread.join();
        }
        // Give in-flight publishes a moment, then report the rest as unavailable (purged).
        rd_kafka_flush(producer, static_cast<int>(std::min<int64_t>(1000, options.publish_timeout.count())));
        rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        for (int i = 0; i < 100 && rd_kafka_outq_len(producer) > 0; ++i) {
            rd_kafka_poll(producer, 50);
        }
        rd_kafka_poll(producer, 0);
    }

    void Publish(std::string topic, std::string key, std::string payload, StatusCallback done) {
        std::shared_lock lock(mu);
        if (!started || stopped) {
            lock.unlock();
            done(
                Status{Unavailable(stopped ? "the Kafka event bus is stopped" : "the Kafka event bus is not started")});
            return;
        }
        auto* ctx = new StatusCallback(std::move(done));
        rd_kafka_resp_err_t err =
            rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
                              RD_KAFKA_V_VALUE(payload.data(), payload.size()),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(ctx), RD_KAFKA_V_END);
        lock.unlock();
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            StatusCallback cb = std::move(*ctx);
            delete ctx;
            cb(Status{Unavailable("Kafka producer refused a record for " + topic + ": " + rd_kafka_err2str(err))});
        }
    }

    Result<std::unique_ptr<BusSubscription>> Subscribe(std::string topic, std::string group, BusHandler handler) {
        if (topic.empty() || group.empty() || !handler) {
            return MakeError(Errc::kInvalidArgument, "invalid_subscription", "topic, group and handler must be set");
        }
        {
            std::shared_lock lock(mu);
            if (!started || stopped) {
                return Unavailable(stopped ? "the Kafka event bus is stopped" : "the Kafka event bus is not started");
            }
        }
        auto settings = BaseSettings();
        settings.insert(settings.begin() + 3,
                        {
                            {"group.id", options.group_prefix + group},
                            {"enable.auto.commit", "false"},
                            {"enable.auto.offset.store", "false"},
                            {"auto.offset.reset", "earliest"},
                            {"enable.partition.eof", "false"},
                            {"session.timeout.ms", std::to_string(options.session_timeout.count())},
                            {"heartbeat.interval.ms", std::to_string(options.heartbeat_interval.count())},
                            {"fetch.wait.max.ms", std::to_string(options.fetch_wait.count())},
                        });
        std::string error;
        rd_kafka_conf_t* conf = MakeConf(settings, &error);
        if (conf == nullptr) {
            return MakeError(Errc::kInvalidArgument, "invalid_kafka_config", error);
        }
        // The rebalance callback runs only inside rd_kafka_consumer_poll/close on the subscription's own
        // poll thread, which holds a reference to it.
        auto subscription = std::make_shared<KafkaSubscription>(options, topic, std::move(handler));
        rd_kafka_conf_set_rebalance_cb(conf, &KafkaSubscription::OnRebalance);
        rd_kafka_conf_set_opaque(conf, subscription.get());
        char err[512];
        rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
        if (rk == nullptr) {
            rd_kafka_conf_destroy(conf);
            return MakeError(Errc::kInvalidArgument, "invalid_kafka_config", std::string("Kafka consumer: ") + err);
        }
        subscription->Attach(rk);
        // The topic must exist: subscribing to a missing one would silently consume nothing. Asking for
        // every topic's metadata does not make a broker auto-create it (asking for this one would).
        const rd_kafka_metadata_t* md = nullptr;
        rd_kafka_resp_err_t e =
            rd_kafka_metadata(rk, 1, nullptr, &md, static_cast<int>(options.connect_timeout.count()));
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            return Unavailable("Kafka at " + options.bootstrap_servers + " did not answer: " + rd_kafka_err2str(e));
        }
        rd_kafka_resp_err_t topic_err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        for (int i = 0; i < md->topic_cnt; ++i) {
            if (topic == md->topics[i].topic) {
                topic_err = md->topics[i].err;
            }
        }
        rd_kafka_metadata_destroy(md);
        if (topic_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            return MakeError(Errc::kFailedPrecondition, "unknown_topic",
                             "Kafka topic '" + topic + "' is not available at " + options.bootstrap_servers + " (" +
                                 rd_kafka_err2str(topic_err) + "); create it with the partitions you need");
        }
        rd_kafka_poll_set_consumer(rk);
        rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
        e = rd_kafka_subscribe(rk, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            return Unavailable("subscribing to Kafka topic " + topic + ": " + rd_kafka_err2str(e));
        }
        {
            std::unique_lock lock(mu);
            if (stopped) {
                return Unavailable("the Kafka event bus is stopped");
            }
            std::erase_if(subscriptions, [](const auto& w) { return w.expired(); });
            subscriptions.push_back(subscription);
        }
        subscription->StartThread();

        return std::unique_ptr<BusSubscription>(std::make_unique<SubscriptionHandle>(std::move(subscription)));
    }

    KafkaEventBusOptions options;
    std::shared_mutex mu;  // Publish (shared) against Start/Stop (exclusive)
    bool started = false;
    bool stopped = false;
    rd_kafka_t* producer = nullptr;
    std::atomic<bool> poll_stop{false};
    std::thread poll_thread;
    std::vector<std::weak_ptr<KafkaSubscription>> subscriptions;
};

KafkaEventBus::KafkaEventBus(KafkaEventBusOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}

KafkaEventBus::~KafkaEventBus() { Stop(); }

Status KafkaEventBus::Start() { return impl_->Start(); }

void KafkaEventBus::Stop() { impl_->Stop(); }

void KafkaEventBus::Publish(std::string topic, std::string key, std::string payload, StatusCallback done) {
    impl_->Publish(std::move(topic), std::move(key), std::move(payload), std::move(done));
}

Result<std::unique_ptr<BusSubscription>> KafkaEventBus::Subscribe(std::string topic, std::string group,
                                                                  BusHandler handler) {
    return impl_->Subscribe(std::move(topic), std::move(group), std::move(handler));
}

}  // namespace flare
