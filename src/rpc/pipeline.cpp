#include "rpc/pipeline.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/clock.hpp"
#include "flare/internal/v1/internal.pb.h"
#include "rpc/clients.hpp"
#include "rpc/convert.hpp"

namespace flare::rpc {

std::string BusKey(const std::string& tenant_id, const std::string& conversation_id) {
    return tenant_id + '/' + conversation_id;
}

// ------------------------------------------------------------------------------------ BusCommitter

BusCommitter::BusCommitter(EventBus& bus, PresenceRegistry* presence, BusCommitterOptions options)
    : bus_(bus), presence_(presence), options_(std::move(options)) {}

BusCommitter::~BusCommitter() { Stop(); }

void BusCommitter::Start() {
    std::lock_guard lock(mu_);
    if (!timer_.joinable() && !stopping_) {
        timer_ = std::thread([this] { TimeoutLoop(); });
    }
}

void BusCommitter::Stop() {
    std::unordered_map<std::string, Waiting> left;
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        left.swap(waiting_);
    }
    cv_.notify_all();
    if (timer_.joinable()) {
        timer_.join();
    }
    for (auto& [id, w] : left) {
        w.done(MakeError(Errc::kUnavailable, "storage_unavailable", "the orchestrator is shutting down; retry"));
    }
}

size_t BusCommitter::waiting() {
    std::lock_guard lock(mu_);
    return waiting_.size();
}

void BusCommitter::Commit(AppendRequest request, FanoutPlan plan, Callback<AppendResult> done,
                          std::function<void(DeliveryStats)> on_delivered) {
    ipb::AppendCommand cmd;
    const std::string id = RandomHexId(12);
    cmd.set_request_id(id);
    cmd.set_reply_endpoint(options_.reply_endpoint);
    ToProto(request.message, cmd.mutable_message());
    for (const auto& u : request.create_with_members) {
        cmd.add_create_with_members(u);
    }
    cmd.set_check_sender(request.check_sender);
    cmd.set_min_sender_role(static_cast<int32_t>(request.min_sender_role));
    cmd.set_refuse_muted(request.refuse_muted);
    if (request.targets_below) {
        cmd.set_has_targets_below(true);
        cmd.set_targets_below(static_cast<int32_t>(*request.targets_below));
    }
    cmd.set_max_members(request.max_members);
    ToProto(plan, cmd.mutable_plan());
    const std::string key = BusKey(request.message.tenant_id, request.message.conversation_id);
    {
        std::lock_guard lock(mu_);
        if (stopping_) {
            return done(MakeError(Errc::kUnavailable, "storage_unavailable", "the orchestrator is shutting down"));
        }
        waiting_.emplace(id, Waiting{std::move(done), std::move(on_delivered), std::move(plan),
                                     std::chrono::steady_clock::now() + options_.timeout});
    }
    bus_.Publish(kAppendTopic, key, cmd.SerializeAsString(), [this, id](Status s) {
        if (s.ok()) {
            return;  // storage-writer answers
        }
        std::optional<Waiting> w;
        {
            std::lock_guard lock(mu_);
            auto it = waiting_.find(id);
            if (it != waiting_.end()) {
                w.emplace(std::move(it->second));
                waiting_.erase(it);
            }
        }
        if (w) {
            spdlog::warn("orchestrator: append not accepted by the bus: {}", s.error().message);
            w->done(MakeError(Errc::kUnavailable, "bus_unavailable",
                              "the message could not be queued for storage: " + s.error().message));
        }
    });
}

void BusCommitter::OnOutcome(const ipb::AppendOutcome& outcome) {
    std::optional<Waiting> w;
    {
        std::lock_guard lock(mu_);
        auto it = waiting_.find(outcome.request_id());
        if (it == waiting_.end()) {
            return;  // timed out already, or a redelivery's second answer
        }
        w.emplace(std::move(it->second));
        waiting_.erase(it);
    }
    if (!outcome.ok()) {
        return Finish(std::move(*w), MakeError(static_cast<Errc>(outcome.error_code()), outcome.error_reason(),
                                               outcome.error_message()));
    }
    Finish(std::move(*w), AppendResult{FromProto(outcome.message()), outcome.duplicate()});
}

void BusCommitter::Finish(Waiting w, Result<AppendResult> r) {
    if (!r.ok() || r->duplicate || !w.on_delivered) {
        return w.done(std::move(r));
    }
    if (presence_ == nullptr || !w.plan.recipients) {
        w.on_delivered(DeliveryStats{});
        return w.done(std::move(r));
    }
    // push-server fans out asynchronously: report the devices online for the recipients now.
    auto shared = std::make_shared<Waiting>(std::move(w));
    auto result = std::make_shared<Result<AppendResult>>(std::move(r));
    presence_->Lookup((*result)->message.tenant_id, shared->plan.recipients,
                      [shared, result](Result<std::vector<DeviceSession>> devices) {
                          DeliveryStats stats;
                          if (devices) {
                              std::vector<std::string_view> users;
                              for (const auto& d : *devices) {
                                  if (d.gateway_id == shared->plan.skip_gateway_id &&
                                      d.connection_id == shared->plan.skip_connection_id) {
                                      continue;
                                  }
                                  ++stats.devices;
                                  users.push_back(d.user_id);
                              }
                              std::sort(users.begin(), users.end());
                              stats.users = static_cast<uint64_t>(std::unique(users.begin(), users.end()) -
                                                                  users.begin());
                          }
                          shared->on_delivered(stats);
                          shared->done(std::move(*result));
                      });
}

void BusCommitter::TimeoutLoop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
        cv_.wait_for(lock, std::chrono::milliseconds(200));
        const auto now = std::chrono::steady_clock::now();
        std::vector<Waiting> expired;
        for (auto it = waiting_.begin(); it != waiting_.end();) {
            if (it->second.deadline <= now) {
                expired.push_back(std::move(it->second));
                it = waiting_.erase(it);
            } else {
                ++it;
            }
        }
        if (expired.empty()) {
            continue;
        }
        lock.unlock();
        for (auto& w : expired) {
            w.done(MakeError(Errc::kDeadlineExceeded, "storage_timeout",
                             "storage did not confirm the message in time; retry with the same client_msg_id"));
        }
        lock.lock();
    }
}

// ----------------------------------------------------------------------------------- StorageWriter

StorageWriter::StorageWriter(EventBus& bus, MessageStore& store, AppendReplier& replier, std::string group)
    : bus_(bus), store_(store), replier_(replier), group_(std::move(group)) {}

Status StorageWriter::Start() {
    auto sub = bus_.Subscribe(kAppendTopic, group_, [this](const BusRecord& r, BusAck ack) { Handle(r, std::move(ack)); });
    if (!sub) {
        return sub.error();
    }
    sub_ = std::move(*sub);
    return {};
}

void StorageWriter::Stop() {
    if (sub_) {
        sub_->Stop();
        sub_.reset();
    }
}

void StorageWriter::Handle(const BusRecord& record, BusAck ack) {
    auto cmd = std::make_shared<ipb::AppendCommand>();
    if (!cmd->ParseFromString(record.payload)) {
        ++counters_.malformed;
        spdlog::error("storage-writer: a record of '{}' does not parse; skipped", record.topic);
        return ack(Status{});
    }
    AppendRequest req;
    req.message = FromProto(cmd->message());
    req.create_with_members.assign(cmd->create_with_members().begin(), cmd->create_with_members().end());
    auto role = [](int32_t r) {
        return static_cast<MemberRole>(std::clamp<int32_t>(r, 0, static_cast<int32_t>(MemberRole::kOwner)));
    };
    req.check_sender = cmd->check_sender();
    req.min_sender_role = role(cmd->min_sender_role());
    req.refuse_muted = cmd->refuse_muted();
    if (cmd->has_targets_below()) {
        req.targets_below = role(cmd->targets_below());
    }
    req.max_members = cmd->max_members();
    store_.Append(std::move(req), [this, cmd, ack = std::move(ack)](Result<AppendResult> r) mutable {
        ipb::AppendOutcome outcome;
        outcome.set_request_id(cmd->request_id());
        if (!r) {
            if (r.error().code == Errc::kUnavailable) {
                ++counters_.retried;
                spdlog::warn("storage-writer: storage unavailable, will retry: {}", r.error().message);
                return ack(r.error());  // the bus hands it out again; the sender's wait may time out
            }
            ++counters_.rejected;
            outcome.set_ok(false);
            outcome.set_error_code(static_cast<int32_t>(r.error().code));
            outcome.set_error_reason(r.error().reason);
            outcome.set_error_message(r.error().message);
            replier_.Reply(cmd->reply_endpoint(), outcome.SerializeAsString(), [](Status) {});
            ++counters_.processed;
            return ack(Status{});
        }
        if (r->duplicate) {
            ++counters_.duplicates;
        }
        outcome.set_ok(true);
        outcome.set_duplicate(r->duplicate);
        ToProto(r->message, outcome.mutable_message());
        // Published for every append, duplicates included: a redelivery may follow a crash between the
        // commit and this publish. Gateways drop a seq a connection already has.
        ipb::MessageCommitted committed;
        *committed.mutable_message() = outcome.message();
        *committed.mutable_plan() = cmd->plan();
        const std::string key = BusKey(r->message.tenant_id, r->message.conversation_id);
        bus_.Publish(kCommittedTopic, key, committed.SerializeAsString(),
                     [this, cmd, outcome = outcome.SerializeAsString(), ack = std::move(ack)](Status s) mutable {
                         if (!s.ok()) {
                             ++counters_.retried;
                             spdlog::warn("storage-writer: cannot publish a committed message, will retry: {}",
                                          s.error().message);
                             return ack(s);
                         }
                         replier_.Reply(cmd->reply_endpoint(), std::move(outcome), [](Status) {});
                         ++counters_.processed;
                         ack(Status{});
                     });
    });
}

// -------------------------------------------------------------------------------------- PushWorker

namespace {
constexpr uint32_t kUnknownGatewayAttempts = 5;
}  // namespace

PushWorker::PushWorker(EventBus& bus, PushApi& push, std::string group)
    : bus_(bus), push_(push), group_(std::move(group)) {}

Status PushWorker::Start() {
    auto sub = bus_.Subscribe(kCommittedTopic, group_, [this](const BusRecord& r, BusAck ack) {
        const uint32_t attempt = r.delivery_attempt;
        ipb::MessageCommitted committed;
        if (!committed.ParseFromString(r.payload)) {
            ++counters_.malformed;
            spdlog::error("push-server: a record of '{}' does not parse; skipped", r.topic);
            return ack(Status{});
        }
        push_.Fanout(std::make_shared<const MessageRecord>(FromProto(committed.message())),
                     FromProto(committed.plan()), [this, attempt, ack = std::move(ack)](DeliveryStats stats) {
                         if (stats.lookup_failed) {  // presence is down: try this record again shortly
                             ++counters_.retried;
                             return ack(MakeError(Errc::kUnavailable, "presence_unavailable",
                                                  "presence lookup failed"));
                         }
                         // A gateway the directory does not list yet (just started): again shortly, a
                         // few times (gateways drop what a connection already has). A gateway that
                         // stays unknown is gone; its devices catch up by seq when they reconnect.
                         if (stats.unknown_gateways > 0 && attempt < kUnknownGatewayAttempts) {
                             ++counters_.retried;
                             return ack(MakeError(Errc::kUnavailable, "gateway_unknown",
                                                  "a recipient's gateway is not in the route directory"));
                         }
                         ++counters_.processed;
                         ack(Status{});
                     });
    });
    if (!sub) {
        return sub.error();
    }
    sub_ = std::move(*sub);
    return {};
}

void PushWorker::Stop() {
    if (sub_) {
        sub_->Stop();
        sub_.reset();
    }
}

}  // namespace flare::rpc
