// NatsEventBus on libnats 3.4. Publishing: js_PublishMsgAsync with a Nats-Msg-Id header that names the
// pending `done`; the library's ack handler, a deadline thread and Stop() race to take it out of the
// pending map, so it runs exactly once. Consuming: per partition one fetch thread that pulls one record,
// waits for the handler's acknowledgement (reporting progress meanwhile), then acks it synchronously or
// naks it with a back-off. The consumer's MaxAckPending=1 keeps the partition ordered across members.
#include "adapters/nats/nats_event_bus.hpp"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <initializer_list>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"

namespace flare {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr const char* kMsgIdHeader = "Nats-Msg-Id";
constexpr const char* kKeyHeader = "Flare-Key";

// FNV-1a: stable across processes and versions, so a key keeps its partition (and subject).
uint32_t PartitionOf(std::string_view key, uint32_t partitions) {
    uint32_t h = 2166136261u;
    for (unsigned char c : key) {
        h = (h ^ c) * 16777619u;
    }
    return h % partitions;
}

bool ValidName(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
}

// Runs the steps in order; returns the status of the first that fails, or NATS_OK.
natsStatus FirstFailure(std::initializer_list<std::function<natsStatus()>> steps) {
    for (const auto& step : steps) {
        if (natsStatus s = step(); s != NATS_OK) {
            return s;
        }
    }
    return NATS_OK;
}

std::string LastErrorText(natsStatus s) {
    const char* text = nats_GetLastError(nullptr);
    if (text != nullptr && *text != '\0') {
        return text;
    }
    return natsStatus_GetText(s);
}

Error Unavailable(std::string message) { return MakeError(Errc::kUnavailable, "bus_unavailable", std::move(message)); }

// Maps a failed libnats call to our vocabulary; `what` says what was attempted.
Error FromNats(natsStatus s, const std::string& what, const std::string& detail = "") {
    std::string text = detail.empty() ? LastErrorText(s) : detail;
    if (s == NATS_TIMEOUT) {
        return MakeError(Errc::kDeadlineExceeded, "bus_timeout", what + ": NATS did not answer in time (" + text + ")");
    }
    if (s == NATS_NO_RESPONDERS) {
        return Unavailable(what + ": nobody answered (is JetStream enabled and the stream created?)");
    }
    return Unavailable(what + ": " + text);
}

struct PendingPublish {
    StatusCallback done;
    SteadyClock::time_point deadline;
};

// Publishes the broker has not answered yet. Kept apart from the connection so that the library's ack
// handler, which may run after the bus is gone, only ever touches (and may last release) this object.
struct PublishState {
    std::string instance;  // distinguishes this bus's message ids from other processes'
    std::mutex mu;
    uint64_t next_id = 1;
    std::unordered_map<uint64_t, PendingPublish> pending;
    std::multimap<SteadyClock::time_point, uint64_t> deadlines;
    std::condition_variable cv;
    bool stop = false;

    // Takes the publish out of the map and runs its callback; false when it was completed already
    // (deadline, Stop() or an earlier answer).
    bool Complete(uint64_t id, Status status) {
        StatusCallback done;
        {
            std::lock_guard lock(mu);
            auto it = pending.find(id);
            if (it == pending.end()) {
                return false;
            }
            done = std::move(it->second.done);
            pending.erase(it);
        }
        done(std::move(status));
        return true;
    }
    bool IsPending(uint64_t id) {
        std::lock_guard lock(mu);
        return pending.contains(id);
    }
};

// libnats hands the ack handler a plain closure pointer and gives no guarantee about when its reply
// thread stops calling it, so the closure is a key into this registry, not a pointer.
class PublishRegistry {
public:
    uint64_t Add(const std::shared_ptr<PublishState>& state) {
        std::lock_guard lock(mu_);
        uint64_t id = next_++;
        entries_[id] = state;
        return id;
    }
    void Remove(uint64_t id) {
        std::lock_guard lock(mu_);
        entries_.erase(id);
    }
    std::shared_ptr<PublishState> Find(uint64_t id) {
        std::lock_guard lock(mu_);
        auto it = entries_.find(id);
        return it == entries_.end() ? nullptr : it->second.lock();
    }

private:
    std::mutex mu_;
    uint64_t next_ = 1;
    std::unordered_map<uint64_t, std::weak_ptr<PublishState>> entries_;
};

PublishRegistry& Registry() {
    static PublishRegistry registry;
    return registry;
}

struct QueuedPublish {
    uint64_t id;
    std::string key;
    std::string payload;
};

class NatsSubscription;

}  // namespace

struct NatsEventBus::Impl : std::enable_shared_from_this<NatsEventBus::Impl> {
    std::atomic<bool> async_published{false};
    explicit Impl(NatsEventBusOptions o) : options(std::move(o)) {
        options.partitions = std::max<uint32_t>(1, options.partitions);
        publishes->instance = RandomHexId(8);
    }

    ~Impl() {
        if (js != nullptr) {
            jsCtx_Destroy(js);
        }
        if (nc != nullptr) {
            natsConnection_Destroy(nc);
        }
        if (nopts != nullptr) {
            natsOptions_Destroy(nopts);
        }
    }

    std::string Subject(const std::string& topic, uint32_t partition) const {
        return options.subject_prefix + "." + topic + "." + std::to_string(partition);
    }
    std::string StreamName(const std::string& topic) const {
        std::string name = options.subject_prefix + "_" + topic;
        std::replace(name.begin(), name.end(), '.', '_');
        return name;
    }
    jsOptions RequestOptions() const {
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = options.request_timeout.count();
        return jo;
    }
    SteadyClock::duration Backoff(uint64_t deliveries) const {
        auto d = options.retry_backoff;
        for (uint64_t i = 1; i < deliveries && d < options.max_retry_backoff; ++i) {
            d *= 2;
        }
        return std::min(d, options.max_retry_backoff);
    }

    Status Start();
    void Stop();
    void Publish(std::string topic, std::string key, std::string payload, StatusCallback done);
    Status EnsureStream(const std::string& topic);
    Status EnsureConsumer(const std::string& topic, const std::string& durable, uint32_t partition);
    Result<std::unique_ptr<BusSubscription>> Subscribe(std::string topic, std::string group, BusHandler handler);

    void Send(uint64_t id, const std::string& topic, const std::string& key, const std::string& payload);
    void RunAdmin();
    void RunDeadlines();

    static void OnPublishAck(jsCtx* js, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure);

    NatsEventBusOptions options;
    std::shared_ptr<PublishState> publishes = std::make_shared<PublishState>();
    uint64_t registry_id = 0;
    natsOptions* nopts = nullptr;
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;

    // Lifecycle, topics whose stream is known to exist, and publishes waiting for their stream.
    std::mutex mu;
    bool started = false;
    bool stopped = false;
    std::set<std::string> ready_topics;
    std::map<std::string, std::deque<QueuedPublish>> waiting;
    std::deque<std::string> admin_jobs;
    std::condition_variable admin_cv;
    std::thread admin_thread;
    std::vector<std::weak_ptr<NatsSubscription>> subscriptions;
    std::thread deadline_thread;
};

namespace {

// One member of a group: a fetch thread per partition, each owning its pull subscription.
class NatsSubscription final : public BusSubscription, public std::enable_shared_from_this<NatsSubscription> {
public:
    NatsSubscription(std::shared_ptr<NatsEventBus::Impl> impl, std::string topic, BusHandler handler)
        : impl_(std::move(impl)), topic_(std::move(topic)), handler_(std::move(handler)) {}

    // Takes ownership of the pull subscriptions (one per partition) and starts fetching.
    void Start(std::vector<natsSubscription*> subs) {
        std::lock_guard lock(mu_);
        for (natsSubscription* sub : subs) {
            threads_.emplace_back([self = shared_from_this(), sub] { self->Run(sub); });
            thread_ids_.insert(threads_.back().get_id());
        }
    }

    void Stop() override {
        std::vector<std::thread> threads;
        {
            std::unique_lock lock(mu_);
            stop_ = true;
            cv_.notify_all();
            threads.swap(threads_);
            if (threads.empty()) {
                if (!thread_ids_.contains(std::this_thread::get_id())) {
                    cv_.wait(lock, [&] { return running_ == 0; });  // another Stop() is joining
                }
                return;
            }
        }
        for (auto& t : threads) {
            if (t.get_id() == std::this_thread::get_id()) {
                t.detach();  // Stop() from inside the handler: this thread ends when the handler returns
            } else {
                t.join();
            }
        }
    }

private:
    struct AckSlot {
        std::optional<Status> result;
        bool closed = false;
    };

    bool Stopping() {
        std::lock_guard lock(mu_);
        return stop_;
    }

    void Run(natsSubscription* sub) {
        {
            std::lock_guard lock(mu_);
            ++running_;
        }
        const int64_t wait_ms = std::max<int64_t>(1, impl_->options.fetch_wait.count());
        while (!Stopping()) {
            natsMsgList list{};
            jsErrCode jerr = static_cast<jsErrCode>(0);
            natsStatus s = natsSubscription_Fetch(&list, sub, 1, wait_ms, &jerr);
            if (s == NATS_TIMEOUT) {
                continue;
            }
            if (s != NATS_OK) {
                spdlog::warn("nats bus: fetch on {} failed: {}", topic_, LastErrorText(s));
                std::unique_lock lock(mu_);
                cv_.wait_for(lock, impl_->options.reconnect_wait, [&] { return stop_; });
                continue;
            }
            for (int i = 0; i < list.Count; ++i) {
                if (list.Msgs[i] != nullptr) {
                    Handle(list.Msgs[i]);
                }
            }
            natsMsgList_Destroy(&list);
        }
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
        std::lock_guard lock(mu_);
        --running_;
        cv_.notify_all();
    }

    void Handle(natsMsg* msg) {
        jsOptions jo = impl_->RequestOptions();
        if (Stopping()) {
            natsMsg_Nak(msg, &jo);
            return;
        }
        uint64_t deliveries = 1;
        jsMsgMetaData* meta = nullptr;
        if (natsMsg_GetMetaData(&meta, msg) == NATS_OK && meta != nullptr) {
            deliveries = std::max<uint64_t>(1, meta->NumDelivered);
            jsMsgMetaData_Destroy(meta);
        }
        BusRecord record;
        record.topic = topic_;
        const char* key = nullptr;
        if (natsMsgHeader_Get(msg, kKeyHeader, &key) == NATS_OK && key != nullptr) {
            record.key = key;
        }
        record.payload.assign(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
        record.delivery_attempt = static_cast<uint32_t>(std::min<uint64_t>(deliveries, UINT32_MAX));

        auto slot = std::make_shared<AckSlot>();
        BusAck ack = [weak = weak_from_this(), slot](Status status) {
            auto self = weak.lock();
            if (!self) {
                return;
            }
            std::lock_guard lock(self->mu_);
            if (!slot->closed && !slot->result) {
                slot->result = std::move(status);
                self->cv_.notify_all();
            }
        };
        handler_(record, std::move(ack));

        // Wait for the acknowledgement; keep the server from redelivering a record still being worked on.
        const auto progress_every =
            std::max<SteadyClock::duration>(impl_->options.ack_wait / 3, std::chrono::milliseconds(100));
        std::optional<Status> result;
        {
            std::unique_lock lock(mu_);
            while (!slot->result && !stop_) {
                if (!cv_.wait_for(lock, progress_every, [&] { return slot->result || stop_; })) {
                    lock.unlock();
                    natsMsg_InProgress(msg, &jo);
                    lock.lock();
                }
            }
            slot->closed = true;
            result = slot->result;
        }
        if (!result) {
            natsMsg_Nak(msg, &jo);  // stopped before the acknowledgement: hand it to the group again now
            return;
        }
        if (result->ok()) {
            jsErrCode jerr = static_cast<jsErrCode>(0);
            natsStatus s = natsMsg_AckSync(msg, &jo, &jerr);
            if (s != NATS_OK) {
                spdlog::warn("nats bus: ack on {} failed ({}); the record will be delivered again", topic_,
                             LastErrorText(s));
            }
            return;
        }
        auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(impl_->Backoff(deliveries));
        natsMsg_NakWithDelay(msg, delay.count(), &jo);
    }

    std::shared_ptr<NatsEventBus::Impl> impl_;
    std::string topic_;
    BusHandler handler_;

    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    int running_ = 0;
    std::vector<std::thread> threads_;
    std::set<std::thread::id> thread_ids_;
};

// What the caller owns; the bus keeps only a weak reference, so that its Stop() can end the subscription.
class SubscriptionHandle final : public BusSubscription {
public:
    explicit SubscriptionHandle(std::shared_ptr<NatsSubscription> s) : s_(std::move(s)) {}
    ~SubscriptionHandle() override { s_->Stop(); }
    void Stop() override { s_->Stop(); }

private:
    std::shared_ptr<NatsSubscription> s_;
};

}  // namespace

Status NatsEventBus::Impl::Start() {
    {
        std::lock_guard lock(mu);
        if (started || stopped || nopts != nullptr) {
            return MakeError(Errc::kFailedPrecondition, "already_started", "NatsEventBus::Start called twice");
        }
    }
    if (options.subject_prefix.empty() || options.subject_prefix.find_first_of(" \t*>") != std::string::npos) {
        return MakeError(Errc::kInvalidArgument, "invalid_subject_prefix",
                         "NATS subject prefix '" + options.subject_prefix + "' must be non-empty without wildcards");
    }
    natsStatus s = FirstFailure({
        [&] { return natsOptions_Create(&nopts); },
        [&] { return natsOptions_SetURL(nopts, options.url.c_str()); },
        [&] { return natsOptions_SetName(nopts, "flare-event-bus"); },
        [&] { return natsOptions_SetTimeout(nopts, options.connect_timeout.count()); },
        [&] { return natsOptions_SetAllowReconnect(nopts, true); },
        [&] { return natsOptions_SetMaxReconnect(nopts, -1); },  // forever; publishes time out meanwhile
        [&] { return natsOptions_SetReconnectWait(nopts, options.reconnect_wait.count()); },
    });
    if (s != NATS_OK) {
        return MakeError(Errc::kInvalidArgument, "invalid_nats_url",
                         "NATS options for '" + options.url + "' are invalid: " + LastErrorText(s));
    }
    s = natsConnection_Connect(&nc, nopts);
    if (s != NATS_OK) {
        nc = nullptr;
        return Unavailable("NATS at " + options.url + " is unreachable: " + LastErrorText(s));
    }
    registry_id = Registry().Add(publishes);
    jsOptions jo = RequestOptions();
    jo.PublishAsync.AckHandler = &Impl::OnPublishAck;
    jo.PublishAsync.AckHandlerClosure = reinterpret_cast<void*>(static_cast<uintptr_t>(registry_id));
    jo.PublishAsync.MaxPending = 100000;
    s = natsConnection_JetStream(&js, nc, &jo);
    if (s != NATS_OK) {
        js = nullptr;
        return Unavailable("JetStream context for " + options.url + ": " + LastErrorText(s));
    }
    jsAccountInfo* info = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_GetAccountInfo(&info, js, &jo, &jerr);
    if (s != NATS_OK) {
        Error e = FromNats(s, "JetStream at " + options.url);
        e.code = Errc::kUnavailable;
        e.reason = "bus_unavailable";
        return e;
    }
    jsAccountInfo_Destroy(info);
    {
        std::lock_guard lock(mu);
        started = true;
    }
    admin_thread = std::thread([this] { RunAdmin(); });
    deadline_thread = std::thread([this] { RunDeadlines(); });
    return Status{};
}

void NatsEventBus::Impl::Stop() {
    std::vector<std::shared_ptr<NatsSubscription>> subs;
    {
        std::lock_guard lock(mu);
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
        admin_cv.notify_all();
    }
    for (auto& s : subs) {
        s->Stop();
    }
    if (nc != nullptr) {
        natsConnection_FlushTimeout(nc, 1000);  // acks and naks of the stopped subscriptions
        natsConnection_Close(nc);               // also ends a stream request the admin thread may be waiting on
    }
    if (admin_thread.joinable()) {
        admin_thread.join();
    }
    PublishState& ps = *publishes;
    {
        std::lock_guard lock(ps.mu);
        ps.stop = true;
        ps.cv.notify_all();
    }
    if (deadline_thread.joinable()) {
        deadline_thread.join();
    }
    std::unordered_map<uint64_t, PendingPublish> left;
    {
        std::lock_guard lock(ps.mu);
        left.swap(ps.pending);
        ps.deadlines.clear();
    }
    for (auto& [id, p] : left) {
        p.done(Status{Unavailable("the NATS event bus was stopped before " + options.url + " acknowledged")});
    }
    // libnats 3.4 crashes in js_PublishAsyncGetPendingList on a context that never published
    // asynchronously (its pending list does not exist yet).
    if (js != nullptr && async_published.load()) {
        natsMsgList unacked{};
        if (js_PublishAsyncGetPendingList(&unacked, js) == NATS_OK) {
            natsMsgList_Destroy(&unacked);
        }
    }
    if (registry_id != 0) {
        Registry().Remove(registry_id);
    }
}

void NatsEventBus::Impl::Publish(std::string topic, std::string key, std::string payload, StatusCallback done) {
    if (!ValidName(topic)) {
        done(Status{MakeError(Errc::kInvalidArgument, "invalid_topic",
                              "topic '" + topic + "' may use only letters, digits, '_' and '-'")});
        return;
    }
    std::unique_lock lock(mu);
    if (!started || stopped) {
        lock.unlock();
        done(Status{Unavailable(stopped ? "the NATS event bus is stopped" : "the NATS event bus is not started")});
        return;
    }
    uint64_t id;
    {
        PublishState& ps = *publishes;
        std::lock_guard plock(ps.mu);
        id = ps.next_id++;
        auto deadline = SteadyClock::now() + options.publish_timeout;
        ps.pending.emplace(id, PendingPublish{std::move(done), deadline});
        bool earliest = ps.deadlines.empty() || deadline < ps.deadlines.begin()->first;
        ps.deadlines.emplace(deadline, id);
        if (earliest) {
            ps.cv.notify_all();
        }
    }
    if (!options.create_streams || ready_topics.contains(topic)) {
        lock.unlock();
        Send(id, topic, key, payload);
        return;
    }
    auto& queue = waiting[topic];
    queue.push_back(QueuedPublish{id, std::move(key), std::move(payload)});
    if (queue.size() == 1) {
        admin_jobs.push_back(topic);
        admin_cv.notify_all();
    }
}

void NatsEventBus::Impl::Send(uint64_t id, const std::string& topic, const std::string& key,
                              const std::string& payload) {
    const std::string subject = Subject(topic, PartitionOf(key, options.partitions));
    const std::string msg_id = publishes->instance + "-" + std::to_string(id);
    natsMsg* msg = nullptr;
    natsStatus s = FirstFailure({
        [&] {
            return natsMsg_Create(&msg, subject.c_str(), nullptr, payload.data(), static_cast<int>(payload.size()));
        },
        [&] { return natsMsgHeader_Set(msg, kMsgIdHeader, msg_id.c_str()); },
        [&] { return natsMsgHeader_Set(msg, kKeyHeader, key.c_str()); },
    });
    if (s == NATS_OK) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = options.publish_timeout.count();
        async_published.store(true);
        s = js_PublishMsgAsync(js, &msg, &po);
    }
    natsMsg_Destroy(msg);  // no-op when the library took it
    if (s != NATS_OK) {
        publishes->Complete(id, Status{FromNats(s, "publish to " + subject)});
    }
}

void NatsEventBus::Impl::OnPublishAck(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto ps = Registry().Find(reinterpret_cast<uintptr_t>(closure));
    const char* msg_id = nullptr;
    if (ps && natsMsgHeader_Get(msg, kMsgIdHeader, &msg_id) == NATS_OK && msg_id != nullptr) {
        std::string_view v(msg_id);
        auto dash = v.rfind('-');
        uint64_t id = 0;
        if (dash != std::string_view::npos && v.substr(0, dash) == ps->instance) {
            id = std::strtoull(msg_id + dash + 1, nullptr, 10);
        }
        if (id != 0) {
            if (pa != nullptr) {
                ps->Complete(id, Status{});
            } else if (pae != nullptr) {
                std::string subject = natsMsg_GetSubject(msg) ? natsMsg_GetSubject(msg) : "?";
                std::string text = pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err);
                ps->Complete(id, Status{FromNats(pae->Err, "publish to " + subject, text)});
            }
        }
    }
    natsMsg_Destroy(msg);
}

void NatsEventBus::Impl::RunAdmin() {
    std::unique_lock lock(mu);
    while (true) {
        admin_cv.wait(lock, [&] { return stopped || !admin_jobs.empty(); });
        if (stopped) {
            return;
        }
        std::string topic = std::move(admin_jobs.front());
        admin_jobs.pop_front();
        lock.unlock();
        Status st = EnsureStream(topic);
        lock.lock();
        std::deque<QueuedPublish> queued;
        if (auto it = waiting.find(topic); it != waiting.end()) {
            queued.swap(it->second);
            waiting.erase(it);
        }
        if (st.ok()) {
            ready_topics.insert(topic);
            if (!stopped) {
                // Under `mu`: a later Publish of this topic must not overtake the queued ones.
                for (auto& q : queued) {
                    if (publishes->IsPending(q.id)) {  // not timed out while the stream was created
                        Send(q.id, topic, q.key, q.payload);
                    }
                }
                continue;
            }
        }
        lock.unlock();
        for (auto& q : queued) {
            publishes->Complete(q.id, st.ok() ? Status{Unavailable("the NATS event bus is stopped")} : st);
        }
        lock.lock();
    }
}

void NatsEventBus::Impl::RunDeadlines() {
    PublishState& ps = *publishes;
    std::unique_lock lock(ps.mu);
    while (!ps.stop) {
        if (ps.deadlines.empty()) {
            ps.cv.wait(lock);
            continue;
        }
        auto first = ps.deadlines.begin()->first;
        if (SteadyClock::now() < first) {
            ps.cv.wait_until(lock, first);
            continue;
        }
        std::vector<StatusCallback> expired;
        auto now = SteadyClock::now();
        while (!ps.deadlines.empty() && ps.deadlines.begin()->first <= now) {
            uint64_t id = ps.deadlines.begin()->second;
            ps.deadlines.erase(ps.deadlines.begin());
            auto it = ps.pending.find(id);
            if (it != ps.pending.end()) {
                expired.push_back(std::move(it->second.done));
                ps.pending.erase(it);
            }
        }
        // Drop index entries of publishes already answered, so the index does not grow.
        if (ps.deadlines.size() > 2 * ps.pending.size() + 1024) {
            for (auto it = ps.deadlines.begin(); it != ps.deadlines.end();) {
                it = ps.pending.contains(it->second) ? std::next(it) : ps.deadlines.erase(it);
            }
        }
        lock.unlock();
        for (auto& done : expired) {
            done(Status{MakeError(Errc::kDeadlineExceeded, "bus_timeout",
                                  "NATS at " + options.url + " did not acknowledge the publish within " +
                                      std::to_string(options.publish_timeout.count()) + " ms")});
        }
        lock.lock();
    }
}

Status NatsEventBus::Impl::EnsureStream(const std::string& topic) {
    const std::string name = StreamName(topic);
    jsOptions jo = RequestOptions();
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsStreamInfo* si = nullptr;
    natsStatus s = js_GetStreamInfo(&si, js, name.c_str(), &jo, &jerr);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return Status{};
    }
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
        return FromNats(s, "looking up stream " + name + " at " + options.url);
    }
    if (!options.create_streams) {
        return MakeError(Errc::kFailedPrecondition, "unknown_topic",
                         "stream " + name + " does not exist at " + options.url + " (create_streams is off)");
    }
    const std::string subjects = options.subject_prefix + "." + topic + ".*";
    const char* subject_list[] = {subjects.c_str()};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name.c_str();
    cfg.Subjects = subject_list;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = js_LimitsPolicy;
    cfg.Discard = js_DiscardOld;
    cfg.Replicas = options.replicas;
    cfg.MaxAge = std::chrono::duration_cast<std::chrono::nanoseconds>(options.max_age).count();
    si = nullptr;
    jerr = static_cast<jsErrCode>(0);
    s = js_AddStream(&si, js, &cfg, &jo, &jerr);
    jsStreamInfo_Destroy(si);
    if (s == NATS_OK || jerr == JSStreamNameExistErr) {
        return Status{};
    }
    return FromNats(s, "creating stream " + name + " at " + options.url);
}

Status NatsEventBus::Impl::EnsureConsumer(const std::string& topic, const std::string& durable, uint32_t partition) {
    const std::string stream = StreamName(topic);
    jsOptions jo = RequestOptions();
    jsErrCode jerr = static_cast<jsErrCode>(0);
    jsConsumerInfo* ci = nullptr;
    natsStatus s = js_GetConsumerInfo(&ci, js, stream.c_str(), durable.c_str(), &jo, &jerr);
    if (s == NATS_OK) {
        jsConsumerInfo_Destroy(ci);
        return Status{};
    }
    if (s != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr) {
        return FromNats(s, "looking up consumer " + durable + " of " + stream);
    }
    const std::string filter = Subject(topic, partition);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable.c_str();
    cc.FilterSubject = filter.c_str();
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckWait = std::chrono::duration_cast<std::chrono::nanoseconds>(options.ack_wait).count();
    cc.MaxAckPending = 1;  // one record of the partition in flight per group: the order guarantee
    ci = nullptr;
    jerr = static_cast<jsErrCode>(0);
    s = js_AddConsumer(&ci, js, stream.c_str(), &cc, &jo, &jerr);
    jsConsumerInfo_Destroy(ci);
    if (s == NATS_OK || jerr == JSConsumerNameExistErr || jerr == JSConsumerExistingActiveErr) {
        return Status{};
    }
    return FromNats(s, "creating consumer " + durable + " of " + stream);
}

Result<std::unique_ptr<BusSubscription>> NatsEventBus::Impl::Subscribe(std::string topic, std::string group,
                                                                       BusHandler handler) {
    if (!ValidName(topic) || !ValidName(group) || !handler) {
        return MakeError(Errc::kInvalidArgument, "invalid_subscription",
                         "topic and group may use only letters, digits, '_' and '-', and a handler is required");
    }
    {
        std::lock_guard lock(mu);
        if (!started || stopped) {
            return Unavailable(stopped ? "the NATS event bus is stopped" : "the NATS event bus is not started");
        }
    }
    if (Status st = EnsureStream(topic); !st.ok()) {
        return st.error();
    }
    const std::string stream = StreamName(topic);
    std::vector<natsSubscription*> subs;
    auto release = [&subs] {
        for (natsSubscription* sub : subs) {
            natsSubscription_Destroy(sub);
        }
    };
    for (uint32_t p = 0; p < options.partitions; ++p) {
        const std::string durable = group + "_p" + std::to_string(p);
        if (Status st = EnsureConsumer(topic, durable, p); !st.ok()) {
            release();
            return st.error();
        }
        jsOptions jo = RequestOptions();
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = stream.c_str();
        so.Consumer = durable.c_str();  // bind: the library neither creates nor deletes it
        natsSubscription* sub = nullptr;
        jsErrCode jerr = static_cast<jsErrCode>(0);
        const std::string subject = Subject(topic, p);
        natsStatus s = js_PullSubscribe(&sub, js, subject.c_str(), durable.c_str(), &jo, &so, &jerr);
        if (s != NATS_OK) {
            release();
            return FromNats(s, "subscribing to " + subject);
        }
        subs.push_back(sub);
    }
    auto subscription = std::make_shared<NatsSubscription>(shared_from_this(), topic, std::move(handler));
    {
        std::lock_guard lock(mu);
        if (stopped) {
            release();
            return Unavailable("the NATS event bus is stopped");
        }
        std::erase_if(subscriptions, [](const auto& w) { return w.expired(); });
        subscriptions.push_back(subscription);
    }
    subscription->Start(std::move(subs));

    return std::unique_ptr<BusSubscription>(std::make_unique<SubscriptionHandle>(std::move(subscription)));
}

NatsEventBus::NatsEventBus(NatsEventBusOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}

NatsEventBus::~NatsEventBus() { Stop(); }

Status NatsEventBus::Start() { return impl_->Start(); }

void NatsEventBus::Stop() { impl_->Stop(); }

void NatsEventBus::Publish(std::string topic, std::string key, std::string payload, StatusCallback done) {
    impl_->Publish(std::move(topic), std::move(key), std::move(payload), std::move(done));
}

Result<std::unique_ptr<BusSubscription>> NatsEventBus::Subscribe(std::string topic, std::string group,
                                                                 BusHandler handler) {
    return impl_->Subscribe(std::move(topic), std::move(group), std::move(handler));
}

}  // namespace flare
