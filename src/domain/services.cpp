#include "domain/services.hpp"

#include <algorithm>
#include <atomic>
#include <unordered_map>
#include <utility>

namespace flare {

namespace {

bool Contains(const std::vector<std::string>& sorted, const std::string& user) {
    return std::binary_search(sorted.begin(), sorted.end(), user);
}

}  // namespace

std::string StoredText(const MessageRecord& m) {
    return m.kind != MessageKind::kEvent ? m.text : m.event.type == EventType::kEdited ? m.event.text : std::string();
}

std::string StoredSenderId(const SendCommand& c) {
    return c.check_membership || !c.sender.user_id.empty() ? c.sender.user_id : "system";
}

SendReceipt ReceiptOf(const MessageRecord& m, bool duplicate) {
    return SendReceipt{m.conversation_id, m.server_msg_id, m.seq, m.server_time_ms, duplicate, StoredText(m)};
}

namespace {

Error NotMember(const std::string& conv) {
    return MakeError(Errc::kPermissionDenied, "not_member", "you are not a member of conversation '" + conv + "'");
}

}  // namespace

void OriginalOrRefusal(MessageStore& store, std::string tenant_id, std::string conversation_id, std::string sender_id,
                       std::string client_msg_id, MessageKind kind, EventType type, Error refusal,
                       Callback<MessageRecord> done) {
    if (client_msg_id.empty() || refusal.code == Errc::kUnavailable || refusal.code == Errc::kInvalidArgument) {
        return done(std::move(refusal));
    }
    store.FindAppended(std::move(tenant_id), std::move(conversation_id), std::move(sender_id), std::move(client_msg_id),
                       [kind, type, refusal = std::move(refusal),
                        done = std::move(done)](Result<std::optional<MessageRecord>> found) mutable {
                           if (found && *found && SameKindOfRequest(**found, kind, type)) {
                               return done(std::move(**found));
                           }
                           done(std::move(refusal));
                       });
}

// ------------------------------------------------------------------------------------------ session

SessionService::SessionService(ConversationStore& store, size_t max_cached, bool remember_missing)
    : store_(store), max_cached_(std::max<size_t>(max_cached, 16)), remember_missing_(remember_missing) {}

SessionService::SessionService(ConversationStore& store, MessageStore& messages, PushApi& push, const Clock& clock,
                               IdGenerator& ids, const Limits& limits, size_t max_cached, bool remember_missing)
    : store_(store),
      messages_(&messages),
      push_(&push),
      clock_(&clock),
      ids_(&ids),
      limits_(limits),
      max_cached_(std::max<size_t>(max_cached, 16)),
      remember_missing_(remember_missing) {}

size_t SessionService::cached_conversations() {
    std::lock_guard lock(mu_);
    return cache_.size();
}

void SessionService::EvictLocked() {
    // Drops about an eighth of the idle entries. Entries being loaded stay: requests wait on them.
    size_t to_drop = max_cached_ / 8 + 1;
    for (auto it = cache_.begin(); it != cache_.end() && to_drop > 0;) {
        if (it->second.loading) {
            ++it;
        } else {
            it = cache_.erase(it);
            --to_drop;
        }
    }
}

void SessionService::AddMember(const std::string& key, const std::string& user) {
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it == cache_.end()) {
        return;  // loaded on next use
    }
    if (it->second.loading) {
        it->second.stale = true;
        return;
    }
    if (Contains(*it->second.members, user)) {
        return;
    }
    auto copy = std::make_shared<std::vector<std::string>>(*it->second.members);
    copy->insert(std::lower_bound(copy->begin(), copy->end(), user), user);
    it->second.members = std::move(copy);
    it->second.exists = true;
}

void SessionService::RemoveMember(const std::string& key, const std::string& user) {
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it == cache_.end()) {
        return;
    }
    if (it->second.loading) {
        it->second.stale = true;
        return;
    }
    auto copy = std::make_shared<std::vector<std::string>>(*it->second.members);
    auto pos = std::lower_bound(copy->begin(), copy->end(), user);
    if (pos != copy->end() && *pos == user) {
        copy->erase(pos);
    }
    it->second.members = std::move(copy);
}

void SessionService::Invalidate(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it == cache_.end()) {
        return;
    }
    if (it->second.loading) {
        it->second.stale = true;
    } else {
        cache_.erase(it);
    }
}

void SessionService::Answer(Resolved r, const std::string& user, const Callback<Resolved>& done) {
    if (!r.exists && r.ref.type == ConversationType::kRoom) {
        return done(MakeError(Errc::kNotFound, "unknown_conversation",
                              "conversation '" + r.ref.id + "' does not exist (join the room first)"));
    }
    if (!r.exists && r.ref.type == ConversationType::kGroup) {
        return done(MakeError(Errc::kNotFound, "unknown_conversation", "group '" + r.ref.id + "' does not exist"));
    }
    if (!user.empty() && !Contains(*r.members, user)) {
        return done(NotMember(r.ref.id));
    }
    done(std::move(r));
}

void SessionService::Resolve(std::string tenant_id, std::string user_id, std::string conversation_id,
                             Callback<Resolved> done) {
    auto parsed = ParseConversationId(conversation_id);
    if (!parsed) {
        return done(parsed.error());
    }
    ConversationRef& ref = parsed.value();
    if (!user_id.empty() && ((ref.type == ConversationType::kDirect && user_id != ref.a && user_id != ref.b) ||
                             (ref.type == ConversationType::kSystem && user_id != ref.name))) {
        return done(NotMember(ref.id));
    }
    std::string key = Key(tenant_id, ref.id);
    {
        std::unique_lock lock(mu_);
        if (cache_.size() >= max_cached_ && !cache_.contains(key)) {
            EvictLocked();
        }
        auto [it, inserted] = cache_.try_emplace(key);
        Entry& e = it->second;
        if (!inserted) {
            if (e.loading) {
                e.waiters.push_back(Waiter{std::move(user_id), std::move(done)});
                return;
            }
            Resolved r{e.ref, e.members, e.exists, e.group};  // the one copy, taken under the lock
            lock.unlock();
            return Answer(std::move(r), user_id, done);
        }
        e.ref = ref;
        e.waiters.push_back(Waiter{std::move(user_id), std::move(done)});
    }
    store_.LoadConversation(tenant_id, ref.id, [this, key](Result<std::optional<ConversationInfo>> loaded) mutable {
        OnLoaded(key, std::move(loaded));
    });
}

void SessionService::OnLoaded(const std::string& key, Result<std::optional<ConversationInfo>> loaded) {
    std::unique_lock lock(mu_);
    auto it = cache_.find(key);
    if (it == cache_.end()) {
        return;
    }
    Entry& e = it->second;
    if (!loaded) {
        std::vector<Waiter> waiters = std::move(e.waiters);
        cache_.erase(it);
        lock.unlock();
        for (auto& w : waiters) {
            w.done(loaded.error());
        }
        return;
    }
    auto members = std::make_shared<std::vector<std::string>>();
    if (loaded->has_value()) {
        e.exists = true;
        std::shared_ptr<GroupInfo> group;
        if ((*loaded)->summary.type == ConversationType::kGroup) {
            group = std::make_shared<GroupInfo>();
            group->name = (*loaded)->name;
            group->dissolved = (*loaded)->dissolved;
        }
        for (auto& m : (*loaded)->members) {
            if (group && (m.role != MemberRole::kMember || m.muted_until_ms != 0)) {
                group->meta.emplace(m.user_id, MemberMeta{m.role, m.muted_until_ms});
            }
            members->push_back(std::move(m.user_id));
        }
        std::sort(members->begin(), members->end());
        e.group = std::move(group);
    } else if (e.ref.type == ConversationType::kDirect) {
        *members = {e.ref.a, e.ref.b};  // comes into being with its first message
    } else if (e.ref.type == ConversationType::kSystem) {
        *members = {e.ref.name};
    }
    e.members = std::move(members);
    // Serve the waiters in arrival order, including any that queue up while we serve.
    for (;;) {
        if (e.stale && !e.waiters.empty()) {
            // Membership changed since this load read the store: the waiters get a fresh read.
            e.stale = false;
            lock.unlock();
            const auto sep = key.find('\x1f');
            store_.LoadConversation(key.substr(0, sep), key.substr(sep + 1),
                                    [this, key](Result<std::optional<ConversationInfo>> again) mutable {
                                        OnLoaded(key, std::move(again));
                                    });
            return;
        }
        std::vector<Waiter> waiters = std::move(e.waiters);
        e.waiters.clear();
        if (waiters.empty()) {
            // A room that does not exist is not remembered: unknown names must not fill the cache.
            if (e.stale || (!e.exists && (e.ref.type == ConversationType::kRoom ||
                                          e.ref.type == ConversationType::kGroup || !remember_missing_))) {
                cache_.erase(it);
            } else {
                e.loading = false;
            }
            return;
        }
        const Resolved snapshot{e.ref, e.members, e.exists, e.group};
        lock.unlock();
        for (auto& w : waiters) {
            Answer(snapshot, w.user_id, w.done);
        }
        lock.lock();
        it = cache_.find(key);  // still there: only this function erases a loading entry
    }
}

void SessionService::MarkDirectCreated(const std::string& tenant_id, const ConversationRef& ref) {
    std::lock_guard lock(mu_);
    auto it = cache_.find(Key(tenant_id, ref.id));
    if (it != cache_.end()) {
        // Also while loading: a load that read the store before this commit must not leave the
        // conversation marked as missing (OnLoaded only ever sets `exists`, never clears it).
        it->second.exists = true;
    }
}

void SessionService::JoinRoom(const Principal& who, std::string room, Callback<ConversationSummary> done) {
    if (!IsValidName(room)) {
        return done(MakeError(Errc::kInvalidArgument, "bad_room_name",
                              "room name must be 1..64 characters of A-Z a-z 0-9 _ . @ -"));
    }
    std::string conv = RoomConversationId(room);
    store_.JoinRoom(who.tenant_id, conv, who.user_id,
                    [this, key = Key(who.tenant_id, conv), user = who.user_id,
                     done = std::move(done)](Result<ConversationSummary> r) mutable {
                        if (r) {
                            AddMember(key, user);
                        }
                        done(std::move(r));
                    });
}

void SessionService::LeaveRoom(const Principal& who, std::string room, StatusCallback done) {
    if (!IsValidName(room)) {
        return done(MakeError(Errc::kInvalidArgument, "bad_room_name",
                              "room name must be 1..64 characters of A-Z a-z 0-9 _ . @ -"));
    }
    std::string conv = RoomConversationId(room);
    store_.LeaveRoom(who.tenant_id, conv, who.user_id,
                     [this, key = Key(who.tenant_id, conv), user = who.user_id,
                      done = std::move(done)](Status s) mutable {
                         if (s) {
                             RemoveMember(key, user);
                         }
                         done(std::move(s));
                     });
}

void SessionService::SyncConversations(const Principal& who, std::map<std::string, uint64_t> known, bool include_all,
                                       Callback<std::vector<ConversationStateView>> done) {
    store_.ListUserConversations(
        who.tenant_id, who.user_id, who.device_id,
        [known = std::move(known), include_all,
         done = std::move(done)](Result<std::vector<UserConversation>> list) mutable {
            if (!list) {
                return done(list.error());
            }
            std::vector<ConversationStateView> out;
            for (const auto& c : *list) {
                ConversationStateView v;
                v.conversation_id = c.summary.conversation_id;
                v.type = c.summary.type;
                v.last_seq = c.summary.last_seq;
                v.acked_seq = c.device_acked_seq.value_or(c.joined_seq);
                auto k = known.find(v.conversation_id);
                v.known_seq = k != known.end() ? k->second : v.acked_seq;
                if (include_all || v.last_seq > v.known_seq) {
                    out.push_back(std::move(v));
                }
            }
            done(std::move(out));
        });
}

void SessionService::Ack(const Principal& who, std::string conversation_id, uint64_t seq, Callback<uint64_t> done) {
    Resolve(who.tenant_id, who.user_id, conversation_id,
            [this, who, conversation_id, seq, done = std::move(done)](Result<Resolved> r) mutable {
                if (!r) {
                    return done(r.error());
                }
                if (!r->exists) {
                    return done(MakeError(Errc::kNotFound, "unknown_conversation",
                                          "conversation '" + conversation_id + "' has no messages yet"));
                }
                store_.SaveDeviceCursor(who.tenant_id, who.user_id, who.device_id, std::move(conversation_id), seq,
                                        std::move(done));
            });
}

// --------------------------------------------------------------------------------------------- push

PushService::PushService(PresenceRegistry& presence, GatewayDirectory& gateways, uint32_t large_group_members)
    : presence_(presence), gateways_(gateways), large_group_members_(large_group_members) {}

void PushService::Fanout(std::shared_ptr<const MessageRecord> message, FanoutPlan plan,
                         std::function<void(DeliveryStats)> done) {
    if (large_group_members_ != 0 && message->conversation_type == ConversationType::kGroup &&
        message->kind != MessageKind::kNotice && plan.recipients && plan.recipients->size() > large_group_members_) {
        return FanoutNotice(std::move(message), std::move(plan), std::move(done));
    }
    const std::string tenant = message->tenant_id;
    presence_.Lookup(tenant, std::move(plan.recipients),
                     [this, message = std::move(message), skip_gateway_id = std::move(plan.skip_gateway_id),
                      skip_connection_id = plan.skip_connection_id, done = std::move(done)](Result<std::vector<DeviceSession>> devices) {
                         if (!devices) {  // recipients catch up by seq on their next sync
                             if (done) {
                                 done(DeliveryStats{0, 0, true});
                             }
                             return;
                         }
                         const uint64_t handed = DeliverTo(message, *devices, skip_gateway_id, skip_connection_id,
                                                           /*count_users=*/static_cast<bool>(done), done);
                         if (hooks_ != nullptr && message->seq != 0 &&
                             (message->kind == MessageKind::kText || message->kind == MessageKind::kSystem) &&
                             hooks_->Wants(HookPoint::kDelivery)) {
                             HookEvent e = HookEventFor(HookPoint::kDelivery, *message);
                             e.devices = handed;
                             hooks_->Publish(std::move(e));
                         }
                     });
}

// A large group: every member's devices (the sender's too) get "new messages up to seq N"; while one
// such notice is on its way, later ones wait, coalesced into one with the newest seq.
void PushService::FanoutNotice(std::shared_ptr<const MessageRecord> message, FanoutPlan plan,
                               std::function<void(DeliveryStats)> done) {
    auto notice = std::make_shared<MessageRecord>();
    notice->tenant_id = message->tenant_id;
    notice->conversation_id = message->conversation_id;
    notice->conversation_type = message->conversation_type;
    notice->server_time_ms = message->server_time_ms;
    notice->kind = MessageKind::kNotice;
    notice->event.type = EventType::kNewMessages;
    notice->event.target_seq = message->seq;
    const std::string key = message->tenant_id + '\x1f' + message->conversation_id;
    bool send_now = false;
    {
        std::lock_guard lock(notice_mu_);
        auto [it, inserted] = notices_in_flight_.try_emplace(key);
        if (inserted) {
            send_now = true;
        } else if (!it->second || it->second->notice->event.target_seq < notice->event.target_seq) {
            it->second = Pending{notice, plan.recipients};
        }
    }
    if (send_now) {
        SendNotice(key, std::move(notice), std::move(plan.recipients));
    }
    if (done) {
        done(DeliveryStats{});  // members pull the messages themselves
    }
}

void PushService::SendNotice(const std::string& key, std::shared_ptr<const MessageRecord> notice,
                             MemberList recipients) {
    const std::string tenant = notice->tenant_id;
    presence_.Lookup(tenant, std::move(recipients), [this, key, notice](Result<std::vector<DeviceSession>> devices) {
        auto next = [this, key] {
            std::optional<Pending> pending;
            {
                std::lock_guard lock(notice_mu_);
                auto it = notices_in_flight_.find(key);
                if (it == notices_in_flight_.end()) {
                    return;
                }
                if (!it->second) {
                    notices_in_flight_.erase(it);
                    return;
                }
                pending = std::move(it->second);
                it->second.reset();
            }
            SendNotice(key, std::move(pending->notice), std::move(pending->recipients));
        };
        if (!devices) {
            return next();  // members catch up by seq on their next sync
        }
        DeliverTo(notice, *devices, "", 0, /*count_users=*/false, [next](DeliveryStats) { next(); });
    });
}

void PushService::Broadcast(std::shared_ptr<const MessageRecord> message, std::function<void(DeliveryStats)> done) {
    const std::string tenant = message->tenant_id;
    presence_.ListTenant(tenant, [this, message = std::move(message),
                                  done = std::move(done)](Result<std::vector<DeviceSession>> devices) {
        if (!devices) {
            return done(DeliveryStats{});
        }
        DeliverTo(message, *devices, "", 0, /*count_users=*/true, done);
    });
}

uint64_t PushService::DeliverTo(std::shared_ptr<const MessageRecord> message,
                                const std::vector<DeviceSession>& devices, const std::string& skip_gateway_id,
                                uint64_t skip_connection_id, bool count_users,
                                std::function<void(DeliveryStats)> done) {
    DeliveryStats stats;
    // Most deployments have few gateways: a small vector beats a map here.
    std::vector<std::pair<std::string, std::vector<uint64_t>>> by_gateway;
    std::vector<std::string_view> users;
    for (const auto& d : devices) {
        if (d.connection_id == skip_connection_id && d.gateway_id == skip_gateway_id) {
            continue;
        }
        auto it = std::find_if(by_gateway.begin(), by_gateway.end(),
                               [&](const auto& g) { return g.first == d.gateway_id; });
        if (it == by_gateway.end()) {
            by_gateway.emplace_back(d.gateway_id, std::vector<uint64_t>{});
            it = std::prev(by_gateway.end());
        }
        it->second.push_back(d.connection_id);
        if (count_users) {
            users.push_back(d.user_id);
        }
    }
    std::vector<std::pair<DeliverySink*, const std::vector<uint64_t>*>> sinks;
    for (const auto& [gateway_id, connections] : by_gateway) {
        if (DeliverySink* sink = gateways_.Find(gateway_id)) {
            sinks.emplace_back(sink, &connections);
            stats.devices += connections.size();
        } else {
            ++stats.unknown_gateways;
        }
    }
    if (count_users) {  // only business pushes ask; the chat send path skips the sort
        std::sort(users.begin(), users.end());
        stats.users = static_cast<uint64_t>(std::unique(users.begin(), users.end()) - users.begin());
    }
    if (!done) {
        for (auto [sink, connections] : sinks) {
            sink->Deliver(*message, *connections, nullptr);
        }
        return stats.devices;
    }
    if (sinks.empty()) {
        done(stats);
        return stats.devices;
    }
    // Completions may come from other threads (remote gateways): the last one answers.
    struct Pending {
        std::atomic<size_t> left;
        DeliveryStats stats;
        std::function<void(DeliveryStats)> done;
    };
    auto pending = std::make_shared<Pending>();
    pending->left = sinks.size();
    pending->stats = stats;
    pending->done = std::move(done);
    const uint64_t handed = stats.devices;
    for (auto [sink, connections] : sinks) {
        sink->Deliver(*message, *connections, [pending](Status) {
            if (pending->left.fetch_sub(1) == 1) {
                pending->done(pending->stats);
            }
        });
    }
    return handed;
}

void PushService::Kick(std::vector<DeviceSession> devices, std::string device_id, std::string reason,
                       Callback<uint32_t> done) {
    uint32_t kicked = 0;
    for (const auto& d : devices) {
        if (!device_id.empty() && d.device_id != device_id) {
            continue;
        }
        if (DeliverySink* sink = gateways_.Find(d.gateway_id)) {
            sink->Disconnect(d.connection_id, "kicked", reason.empty() ? "disconnected by the operator" : reason);
            ++kicked;
        }
    }
    done(kicked);
}

// ------------------------------------------------------------------------------------- orchestrator

void LocalCommitter::Commit(AppendRequest request, FanoutPlan plan, Callback<AppendResult> done,
                            std::function<void(DeliveryStats)> on_delivered) {
    messages_.Append(std::move(request), [this, plan = std::move(plan), done = std::move(done),
                                          on_delivered = std::move(on_delivered)](Result<AppendResult> r) mutable {
        if (!r || r->duplicate) {
            return done(std::move(r));
        }
        auto message = std::make_shared<const MessageRecord>(r->message);
        if (!on_delivered) {
            done(std::move(r));
            push_.Fanout(std::move(message), std::move(plan));
            return;
        }
        push_.Fanout(std::move(message), std::move(plan),
                     [r = std::move(r), done = std::move(done),
                      on_delivered = std::move(on_delivered)](DeliveryStats stats) mutable {
                         on_delivered(stats);
                         done(std::move(r));
                     });
    });
}

MessageOrchestrator::MessageOrchestrator(const Limits& limits, ConversationApi& sessions, MessageStore& messages,
                                         MessageCommitter& committer, const Clock& clock, IdGenerator& ids)
    : limits_(limits), sessions_(sessions), messages_(messages), committer_(committer), clock_(clock), ids_(ids) {}

void MessageOrchestrator::Send(SendCommand command, Callback<SendReceipt> done,
                               std::function<void(DeliveryStats)> on_delivered) {
    if (command.kind == MessageKind::kEvent) {
        return SendOperation(std::move(command), std::move(done), std::move(on_delivered));
    }
    if (command.kind == MessageKind::kNotice) {
        return done(MakeError(Errc::kInvalidArgument, "bad_kind", "notices are not sent as messages"));
    }
    if (command.client_msg_id.empty()) {
        return done(MakeError(Errc::kInvalidArgument, "missing_client_msg_id",
                              "client_msg_id is required: it makes a retry safe"));
    }
    if (command.client_msg_id.starts_with("recall:") || command.client_msg_id.starts_with("delete:")) {
        // The keys a recall or delete without a client_msg_id gets: a message must not take them.
        return done(MakeError(Errc::kInvalidArgument, "reserved_client_msg_id",
                              "client_msg_ids starting with 'recall:' or 'delete:' are reserved"));
    }
    if (command.client_msg_id.size() > limits_.max_client_msg_id_bytes) {
        return done(MakeError(Errc::kInvalidArgument, "client_msg_id_too_long",
                              "client_msg_id is longer than " + std::to_string(limits_.max_client_msg_id_bytes) +
                                  " bytes"));
    }
    if (command.text.empty()) {
        return done(MakeError(Errc::kInvalidArgument, "empty_text", "text must not be empty"));
    }
    if (command.text.size() > limits_.max_text_bytes) {
        return done(MakeError(Errc::kInvalidArgument, "text_too_long",
                              "text is " + std::to_string(command.text.size()) + " bytes; the limit is " +
                                  std::to_string(limits_.max_text_bytes)));
    }
    if (command.mentions.size() > limits_.max_mentions) {
        return done(MakeError(Errc::kInvalidArgument, "too_many_mentions",
                              "a message mentions at most " + std::to_string(limits_.max_mentions) + " users"));
    }
    for (const auto& u : command.mentions) {
        if (!IsValidName(u)) {
            return done(MakeError(Errc::kInvalidArgument, "bad_user_id",
                                  "mentions: '" + Utf8Prefix(u, 80) + "' is not a user id"));
        }
    }
    std::sort(command.mentions.begin(), command.mentions.end());
    command.mentions.erase(std::unique(command.mentions.begin(), command.mentions.end()), command.mentions.end());
    const std::string tenant = command.sender.tenant_id, conv = command.conversation_id;
    // The system (a business caller) may write anywhere; users only where they are members.
    const std::string user = command.check_membership ? command.sender.user_id : std::string();
    sessions_.Resolve(tenant, user, conv,
                      [this, command = std::move(command), done = std::move(done),
                       on_delivered = std::move(on_delivered)](Result<SessionService::Resolved> resolved) mutable {
                          if (!resolved) {
                              return done(resolved.error());
                          }
                          if (resolved->ref.type == ConversationType::kSystem && command.kind != MessageKind::kSystem) {
                              return done(MakeError(Errc::kPermissionDenied, "read_only_conversation",
                                                    "'" + resolved->ref.id + "' receives system messages only"));
                          }
                          if (resolved->dissolved()) {
                              return done(MakeError(Errc::kFailedPrecondition, "conversation_dissolved",
                                                    "group '" + resolved->ref.id + "' was dissolved"));
                          }
                          if (command.check_membership) {
                              const MemberMeta meta = resolved->MetaOf(command.sender.user_id);
                              if (meta.muted_until_ms > clock_.NowMs()) {
                                  return done(MakeError(Errc::kPermissionDenied, "member_muted",
                                                        "you are muted in this group until " +
                                                            std::to_string(meta.muted_until_ms) + " (ms)"));
                              }
                              if (command.mention_all && (resolved->ref.type != ConversationType::kGroup ||
                                                          meta.role == MemberRole::kMember)) {
                                  return done(MakeError(Errc::kPermissionDenied, "mention_all_not_allowed",
                                                        "only a group's owner and admins may mention @all"));
                              }
                          }
                          if (hooks_ != nullptr && command.check_membership && NeedsPreSend(resolved->ref.id, command)) {
                              return EnqueuePreSend(PreSendItem{std::move(command), std::move(resolved.value()),
                                                                std::move(done), std::move(on_delivered)});
                          }
                          CommitResolved(std::move(command), std::move(resolved.value()), std::move(done),
                                         std::move(on_delivered));
                      });
}

bool MessageOrchestrator::NeedsPreSend(const std::string& conversation_id, const SendCommand& c) {
    if (hooks_->Wants(HookPoint::kPreSend)) {
        return true;
    }
    // Hooks went away while some of this conversation's messages wait for theirs: queue behind them.
    std::lock_guard lock(presend_mu_);
    return presend_queues_.contains(c.sender.tenant_id + '\x1f' + conversation_id);
}

void MessageOrchestrator::EnqueuePreSend(PreSendItem item) {
    const std::string key = item.command.sender.tenant_id + '\x1f' + item.resolved.ref.id;
    {
        std::lock_guard lock(presend_mu_);
        auto& q = presend_queues_[key];
        q.push_back(std::move(item));
        if (q.size() > 1) {
            return;  // runs when the ones before it are through
        }
    }
    RunPreSend(key);
}

void MessageOrchestrator::RunPreSend(const std::string& key) {
    const PreSendItem* item = nullptr;
    {
        std::lock_guard lock(presend_mu_);
        item = &presend_queues_[key].front();  // deque: stays put while others are appended
    }
    const SendCommand& c = item->command;
    HookEvent e;
    e.point = HookPoint::kPreSend;
    e.tenant_id = c.sender.tenant_id;
    e.conversation_id = item->resolved.ref.id;
    e.conversation_type = item->resolved.ref.type;
    e.user_id = c.sender.user_id;
    e.device_id = c.sender.device_id;
    e.time_ms = clock_.NowMs();
    e.message.tenant_id = c.sender.tenant_id;
    e.message.conversation_id = item->resolved.ref.id;
    e.message.conversation_type = item->resolved.ref.type;
    e.message.client_msg_id = c.client_msg_id;
    e.message.sender_id = c.sender.user_id;
    e.message.sender_device_id = c.sender.device_id;
    e.message.server_time_ms = e.time_ms;
    // An edit is checked like a message with its new text.
    const bool edit = c.kind == MessageKind::kEvent;
    e.message.kind = edit ? MessageKind::kText : c.kind;
    e.message.text = edit ? c.event.text : c.text;
    e.message.mentions = c.mentions;
    e.message.mention_all = c.mention_all;
    hooks_->PreSend(std::move(e), [this, key](Result<PreSendVerdict> verdict) {
        // The front stays in the queue (moved from) until it is committed, so a send enqueued
        // meanwhile waits behind it instead of starting a second run.
        PreSendItem item;
        {
            std::lock_guard lock(presend_mu_);
            item = std::move(presend_queues_[key].front());
        }
        // An unreachable hook engine is treated as allowing (each hook's own failure policy was
        // applied by the engine).
        if (verdict && verdict->action == PreSendVerdict::Action::kReject) {
            AnswerRejected(std::move(item), MakeError(Errc::kPermissionDenied, "rejected_by_hook",
                                                      verdict->reason.empty() ? "the message was rejected"
                                                                              : verdict->reason));
        } else if (verdict && verdict->action == PreSendVerdict::Action::kRewrite &&
                   (verdict->text.empty() || verdict->text.size() > limits_.max_text_bytes)) {
            item.done(MakeError(Errc::kPermissionDenied, "rejected_by_hook",
                                "hook '" + verdict->hook + "' rewrote the message to an empty or too long text"));
        } else {
            if (verdict && verdict->action == PreSendVerdict::Action::kRewrite) {
                (item.command.kind == MessageKind::kEvent ? item.command.event.text : item.command.text) = verdict->text;
            }
            CommitResolved(std::move(item.command), std::move(item.resolved), std::move(item.done),
                           std::move(item.on_delivered));
        }
        bool more = false;
        {
            std::lock_guard lock(presend_mu_);
            auto it = presend_queues_.find(key);
            it->second.pop_front();
            if (it->second.empty()) {
                presend_queues_.erase(it);
            } else {
                more = true;
            }
        }
        if (more) {
            RunPreSend(key);
        }
    });
}

void MessageOrchestrator::AnswerRejected(PreSendItem item, Error rejection) {
    // The hooks may have changed since, or a rate limit counts the retry: the client must not be
    // told that a message everyone received was refused.
    const SendCommand& c = item.command;
    OriginalOrRefusal(messages_, c.sender.tenant_id, item.resolved.ref.id, c.sender.user_id, c.client_msg_id, c.kind,
                      c.event.type, std::move(rejection), [done = std::move(item.done)](Result<MessageRecord> r) {
                          if (!r) {
                              return done(r.error());
                          }
                          done(ReceiptOf(*r, true));
                      });
}

void MessageOrchestrator::PublishCommitted(const MessageRecord& m) {
    HookEvent e = HookEventFor(HookPoint::kPostSend, m);
    if (m.kind == MessageKind::kEvent) {
        if (m.event.type == EventType::kRecalled) {
            e.point = HookPoint::kRecall;
            e.seq = m.event.target_seq;
        } else if (m.event.type == EventType::kReactionAdded || m.event.type == EventType::kReactionRemoved) {
            e.point = HookPoint::kReaction;
            e.seq = m.event.target_seq;
            e.action = m.event.type == EventType::kReactionAdded ? "added" : "removed";
            e.emoji = m.event.text;
        }
    }
    if (hooks_->Wants(e.point)) {
        hooks_->Publish(std::move(e));
    }
}

void MessageOrchestrator::CommitResolved(SendCommand command, ResolvedConversation resolved,
                                         Callback<SendReceipt> done, std::function<void(DeliveryStats)> on_delivered) {
    AppendRequest req;
    MessageRecord& m = req.message;
    m.tenant_id = command.sender.tenant_id;
    m.conversation_id = resolved.ref.id;
    m.conversation_type = resolved.ref.type;
    m.server_msg_id = ids_.NewId();
    m.client_msg_id = std::move(command.client_msg_id);
    m.sender_id = StoredSenderId(command);
    m.sender_device_id = command.sender.device_id;
    m.server_time_ms = clock_.NowMs();
    m.kind = command.kind;
    m.text = std::move(command.text);
    m.mentions = std::move(command.mentions);
    m.mention_all = command.mention_all;
    m.event = std::move(command.event);
    if (!resolved.exists) {
        req.create_with_members = *resolved.members;
    }
    if (resolved.ref.type == ConversationType::kGroup && command.check_membership) {
        // The member cache may be behind a removal or a mute that is committing: the store checks again.
        req.check_sender = true;
        req.min_sender_role = command.min_sender_role;
        req.refuse_muted = m.kind != MessageKind::kEvent || m.event.type == EventType::kEdited;
    }
    FanoutPlan plan{resolved.members, std::move(command.gateway_id), command.connection_id};
    committer_.Commit(
        std::move(req), std::move(plan),
        [this, resolved = std::move(resolved), done = std::move(done)](Result<AppendResult> appended) mutable {
            if (!appended) {
                return done(appended.error());
            }
            const MessageRecord& m = appended->message;
            if (!appended->duplicate && !resolved.exists) {
                sessions_.MarkDirectCreated(m.tenant_id, resolved.ref);
            }
            if (!appended->duplicate && hooks_ != nullptr) {
                PublishCommitted(m);
            }
            done(ReceiptOf(m, appended->duplicate));
        },
        std::move(on_delivered));
}

void MessageOrchestrator::ReadHistory(std::string tenant_id, std::string conversation_id, uint64_t after_seq,
                                      uint32_t limit, Callback<MessagePage> done) {
    Principal system{std::move(tenant_id), "", ""};
    SyncMessages(system, std::move(conversation_id), after_seq, limit, std::move(done));
}

void MessageOrchestrator::SyncMessages(const Principal& who, std::string conversation_id, uint64_t after_seq,
                                       uint32_t limit, Callback<MessagePage> done) {
    if (limit == 0) {
        limit = limits_.sync_default_limit;
    }
    if (limit > limits_.sync_max_limit) {
        return done(MakeError(Errc::kInvalidArgument, "limit_too_large",
                              "limit must be 1.." + std::to_string(limits_.sync_max_limit)));
    }
    sessions_.Resolve(who.tenant_id, who.user_id, conversation_id,
                      [this, tenant = who.tenant_id, reader = who.user_id, after_seq, limit,
                       done = std::move(done)](Result<SessionService::Resolved> r) mutable {
                          if (!r) {
                              return done(r.error());
                          }
                          if (!r->exists) {
                              return done(MessagePage{});
                          }
                          messages_.ReadAfter(std::move(tenant), r->ref.id, after_seq, limit, std::move(reader), std::move(done));
                      });
}

}  // namespace flare
