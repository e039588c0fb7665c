// MemoryEventBus: one mutex guards every topic, partition log and group position; each subscription has
// a delivery thread that picks the next deliverable partition among those dealt to it (partition modulo
// member count) and calls the handler with the mutex released. A record stays in flight for the group
// until settled, even across a reassignment; a hand-out carries a serial so that late or repeated
// acknowledgements are ignored.
#include "adapters/memory/memory_event_bus.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace flare {
namespace {

using SteadyClock = std::chrono::steady_clock;

// FNV-1a: stable across processes and versions, so a key keeps its partition.
uint32_t PartitionOf(std::string_view key, uint32_t partitions) {
    uint32_t h = 2166136261u;
    for (unsigned char c : key) {
        h = (h ^ c) * 16777619u;
    }
    return h % partitions;
}

Error BusUnavailable() {
    return MakeError(Errc::kUnavailable, "bus_unavailable", "the in-process event bus has been stopped");
}

struct StoredRecord {
    std::string key;
    std::string payload;
};

struct PartitionLog {
    std::deque<StoredRecord> records;
    uint64_t base = 0;  // offset of records.front()
    uint64_t end() const { return base + records.size(); }
};

struct Member {
    uint64_t id = 0;
    std::string topic;
    std::string group;
    BusHandler handler;
    std::condition_variable cv;  // waits on Core::mu
    bool stop = false;
    bool exited = false;
    uint32_t cursor = 0;  // round-robin start among partitions
    std::thread thread;
    std::thread::id thread_id;
};

struct GroupPartition {
    uint64_t next = 0;  // first offset not yet acknowledged (the committed position)
    bool in_flight = false;
    uint64_t member = 0;      // holder of the in-flight record
    uint64_t serial = 0;      // identifies one hand-out
    uint32_t deliveries = 0;  // hand-outs of the record at `next` so far
    SteadyClock::time_point not_before{};
};

struct Group {
    std::vector<GroupPartition> parts;
    std::vector<std::shared_ptr<Member>> members;
};

struct Topic {
    std::vector<PartitionLog> parts;
    std::map<std::string, Group> groups;
};

class MemorySubscription;

}  // namespace

struct MemoryEventBus::Core : std::enable_shared_from_this<MemoryEventBus::Core> {
    explicit Core(MemoryEventBusOptions o) : options(std::move(o)) {
        options.partitions = std::max<uint32_t>(1, options.partitions);
        options.max_records_per_partition = std::max<size_t>(1, options.max_records_per_partition);
    }

    Topic& TopicLocked(const std::string& name) {
        auto [it, inserted] = topics.try_emplace(name);
        if (inserted) {
            it->second.parts.resize(options.partitions);
        }
        return it->second;
    }

    void NotifyGroupLocked(Group& group) {
        for (auto& m : group.members) {
            m->cv.notify_all();
        }
    }

    SteadyClock::duration Backoff(uint32_t deliveries) const {
        auto d = options.retry_backoff;
        for (uint32_t i = 1; i < deliveries && d < options.max_retry_backoff; ++i) {
            d *= 2;
        }
        return std::min(d, options.max_retry_backoff);
    }

    void Publish(std::string topic, std::string key, std::string payload, StatusCallback done) {
        bool accepted = false;
        {
            std::lock_guard lock(mu);
            if (!stopped) {
                Topic& t = TopicLocked(topic);
                PartitionLog& log = t.parts[PartitionOf(key, options.partitions)];
                log.records.push_back(StoredRecord{std::move(key), std::move(payload)});
                while (log.records.size() > options.max_records_per_partition) {
                    log.records.pop_front();
                    ++log.base;
                }
                for (auto& [name, group] : t.groups) {
                    NotifyGroupLocked(group);
                }
                accepted = true;
            }
        }
        done(accepted ? Status{} : Status{BusUnavailable()});
    }

    void Settle(const std::string& topic, const std::string& group_name, uint32_t partition, uint64_t serial,
                const Status& status) {
        std::lock_guard lock(mu);
        auto t = topics.find(topic);
        if (t == topics.end()) {
            return;
        }
        auto g = t->second.groups.find(group_name);
        if (g == t->second.groups.end()) {
            return;
        }
        GroupPartition& gp = g->second.parts[partition];
        if (!gp.in_flight || gp.serial != serial) {
            return;  // settled already, or released by a Stop: the record goes out again
        }
        gp.in_flight = false;
        if (status.ok()) {
            ++gp.next;
            gp.deliveries = 0;
            gp.not_before = {};
        } else {
            gp.not_before = SteadyClock::now() + Backoff(gp.deliveries);
        }
        NotifyGroupLocked(g->second);
    }

    void Run(const std::shared_ptr<Member>& m) {
        std::unique_lock lock(mu);
        Topic& topic = TopicLocked(m->topic);
        Group& group = topic.groups[m->group];
        const uint32_t n = options.partitions;
        while (!m->stop) {
            auto now = SteadyClock::now();
            auto wake = SteadyClock::time_point::max();
            int pick = -1;
            // Partitions are dealt out among the members in join order, like a broker's assignment.
            const auto me =
                static_cast<uint32_t>(std::find(group.members.begin(), group.members.end(), m) - group.members.begin());
            const auto members = static_cast<uint32_t>(group.members.size());
            for (uint32_t i = 0; i < n; ++i) {
                uint32_t p = (m->cursor + i) % n;
                if (p % members != me) {
                    continue;
                }
                GroupPartition& gp = group.parts[p];
                const PartitionLog& log = topic.parts[p];
                if (gp.in_flight) {
                    continue;
                }
                if (gp.next < log.base) {
                    gp.next = log.base;  // retention dropped what this group had not consumed
                    gp.deliveries = 0;
                }
                if (gp.next >= log.end()) {
                    continue;
                }
                if (gp.not_before > now) {
                    wake = std::min(wake, gp.not_before);
                    continue;
                }
                pick = static_cast<int>(p);
                break;
            }
            if (pick < 0) {
                if (wake == SteadyClock::time_point::max()) {
                    m->cv.wait(lock);
                } else {
                    m->cv.wait_until(lock, wake);
                }
                continue;
            }
            const auto p = static_cast<uint32_t>(pick);
            m->cursor = p + 1;
            GroupPartition& gp = group.parts[p];
            const StoredRecord& stored = topic.parts[p].records[gp.next - topic.parts[p].base];
            gp.in_flight = true;
            gp.member = m->id;
            const uint64_t serial = ++gp.serial;
            ++gp.deliveries;
            BusRecord record{m->topic, stored.key, stored.payload, gp.deliveries};
            BusAck ack = [weak = weak_from_this(), topic_name = m->topic, group_name = m->group, p,
                          serial](Status status) {
                if (auto core = weak.lock()) {
                    core->Settle(topic_name, group_name, p, serial, status);
                }
            };
            lock.unlock();
            m->handler(record, std::move(ack));
            lock.lock();
        }
        m->exited = true;
        m->cv.notify_all();
    }

    Result<std::shared_ptr<Member>> AddMember(std::string topic, std::string group, BusHandler handler) {
        std::lock_guard lock(mu);
        if (stopped) {
            return BusUnavailable();
        }
        Topic& t = TopicLocked(topic);
        auto [git, inserted] = t.groups.try_emplace(group);
        if (inserted) {
            git->second.parts.resize(options.partitions);
        }
        auto m = std::make_shared<Member>();
        m->id = next_member_id++;
        m->topic = std::move(topic);
        m->group = std::move(group);
        m->handler = std::move(handler);
        git->second.members.push_back(m);
        m->thread = std::thread([core = shared_from_this(), m] { core->Run(m); });
        m->thread_id = m->thread.get_id();
        return m;
    }

    void StopMember(const std::shared_ptr<Member>& m) {
        std::thread worker;
        {
            std::unique_lock lock(mu);
            if (!m->stop) {
                m->stop = true;
                Group& group = topics[m->topic].groups[m->group];
                for (GroupPartition& gp : group.parts) {
                    if (gp.in_flight && gp.member == m->id) {
                        gp.in_flight = false;  // handed out, never acknowledged: deliver again
                    }
                }
                std::erase(group.members, m);
                NotifyGroupLocked(group);
                m->cv.notify_all();
            }
            worker = std::move(m->thread);
            if (!worker.joinable()) {
                if (m->thread_id != std::this_thread::get_id()) {
                    m->cv.wait(lock, [&] { return m->exited; });  // another Stop() is joining
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

    void Shutdown() {
        std::vector<std::shared_ptr<Member>> members;
        {
            std::lock_guard lock(mu);
            stopped = true;
            for (auto& [tname, t] : topics) {
                for (auto& [gname, g] : t.groups) {
                    members.insert(members.end(), g.members.begin(), g.members.end());
                }
            }
        }
        for (auto& m : members) {
            StopMember(m);
        }
    }

    MemoryEventBusOptions options;
    std::mutex mu;
    bool stopped = false;
    uint64_t next_member_id = 1;
    std::unordered_map<std::string, Topic> topics;  // node-based: references stay valid
};

namespace {

class MemorySubscription final : public BusSubscription {
public:
    MemorySubscription(std::shared_ptr<MemoryEventBus::Core> core, std::shared_ptr<Member> member)
        : core_(std::move(core)), member_(std::move(member)) {}
    ~MemorySubscription() override { Stop(); }
    void Stop() override { core_->StopMember(member_); }

private:
    std::shared_ptr<MemoryEventBus::Core> core_;
    std::shared_ptr<Member> member_;
};

}  // namespace

MemoryEventBus::MemoryEventBus(MemoryEventBusOptions options) : core_(std::make_shared<Core>(std::move(options))) {}

MemoryEventBus::~MemoryEventBus() { Stop(); }

void MemoryEventBus::Stop() { core_->Shutdown(); }

void MemoryEventBus::Publish(std::string topic, std::string key, std::string payload, StatusCallback done) {
    core_->Publish(std::move(topic), std::move(key), std::move(payload), std::move(done));
}

Result<std::unique_ptr<BusSubscription>> MemoryEventBus::Subscribe(std::string topic, std::string group,
                                                                   BusHandler handler) {
    if (topic.empty() || group.empty() || !handler) {
        return MakeError(Errc::kInvalidArgument, "invalid_subscription", "topic, group and handler must be set");
    }
    auto member = core_->AddMember(std::move(topic), std::move(group), std::move(handler));
    if (!member.ok()) {
        return member.error();
    }
    return std::unique_ptr<BusSubscription>(std::make_unique<MemorySubscription>(core_, std::move(*member)));
}

}  // namespace flare
