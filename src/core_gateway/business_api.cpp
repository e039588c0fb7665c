#include "core_gateway/business_api.hpp"

#include <google/protobuf/util/json_util.h>

#include "hooks/hook_config.hpp"

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>

#include "auth/jwt.hpp"

namespace flare::core_gateway {

namespace {

void FillHistory(const MessageRecord& m, bpb::HistoryMessage* h) {
    h->set_seq(m.seq);
    h->set_server_msg_id(m.server_msg_id);
    h->set_sender_id(m.sender_id);
    h->set_sender_device_id(m.sender_device_id);
    h->set_server_time_ms(m.server_time_ms);
    h->set_system(m.kind == MessageKind::kSystem);
    h->set_text(m.text);
    h->set_client_msg_id(m.client_msg_id);
    if (m.kind == MessageKind::kEvent) {
        h->set_event_type(std::string(EventTypeName(m.event.type)));
    }
    h->set_recalled(m.recalled);
    h->set_deleted(m.deleted);
    h->set_edit_version(m.edit_version);
}

bpb::GroupChangeResponse GroupReply(const GroupResult& g) {
    bpb::GroupChangeResponse out;
    out.set_conversation_id(g.event.conversation_id);
    out.set_seq(g.event.seq);
    out.set_duplicate(g.duplicate);
    return out;
}

Error Invalid(const std::string& field, const std::string& what) {
    return MakeError(Errc::kInvalidArgument, "invalid_" + field.substr(0, field.find('[')), field + ": " + what);
}

// Validates a list of user ids; returns them without duplicates, in request order.
Result<std::vector<std::string>> ValidUsers(const google::protobuf::RepeatedPtrField<std::string>& ids,
                                            uint32_t max, bool allow_empty) {
    if (ids.empty() && !allow_empty) {
        return Invalid("user_ids", "at least one user id is required");
    }
    if (static_cast<uint32_t>(ids.size()) > max) {
        return Invalid("user_ids", "at most " + std::to_string(max) + " users per call");
    }
    std::vector<std::string> out;
    std::set<std::string> seen;
    for (int i = 0; i < ids.size(); ++i) {
        if (!IsValidName(ids[i])) {
            return Invalid("user_ids[" + std::to_string(i) + "]",
                           "'" + Utf8Prefix(ids[i], 80) + "' is not a user id (1..64 characters of A-Z a-z 0-9 _ . @ -)");
        }
        if (seen.insert(ids[i]).second) {
            out.push_back(ids[i]);
        }
    }
    return out;
}

Status ValidText(const std::string& text, const Limits& limits) {
    if (text.empty()) {
        return Invalid("text", "must not be empty");
    }
    if (text.size() > limits.max_text_bytes) {
        return Invalid("text", "is " + std::to_string(text.size()) + " bytes; the limit is " +
                                   std::to_string(limits.max_text_bytes));
    }
    return {};
}

// Field errors from the domain ("bad_conversation_id", ...) are renamed after the request field.
// Every call's idempotency_key: at most 100 bytes (required where a retry could otherwise apply twice).
Status ValidKey(const std::string& key, bool required) {
    if (key.empty() && required) {
        return Invalid("idempotency_key", "is required: it makes a retry safe");
    }
    if (key.size() > 100) {
        return Invalid("idempotency_key", "is longer than 100 bytes");
    }
    return {};
}

Error NameField(Error e, const std::string& field) {
    if (e.code == Errc::kInvalidArgument && e.message.find(field) != 0) {
        e.message = field + ": " + e.message;
    }
    return e;
}

}  // namespace

BusinessApi::BusinessApi(BusinessApiOptions options, const Limits& limits, ConversationApi& sessions,
                         MessagingApi& orchestrator, PushApi& push, PresenceRegistry& presence, const Clock& clock,
                         IdGenerator& ids)
    : options_(std::move(options)),
      limits_(limits),
      sessions_(sessions),
      orchestrator_(orchestrator),
      push_(push),
      presence_(presence),
      clock_(clock),
      ids_(ids) {}

Result<Caller> BusinessApi::Authenticate(std::string_view authorization) const {
    if (authorization.empty()) {
        return MakeError(Errc::kUnauthenticated, "token_missing",
                         "missing 'authorization: Bearer <token>' (a JWT with role \"business\")");
    }
    if (!authorization.starts_with("Bearer ") && !authorization.starts_with("bearer ")) {
        return MakeError(Errc::kUnauthenticated, "token_malformed", "authorization must be 'Bearer <token>'");
    }
    auto claims = VerifyToken(std::string(authorization.substr(7)), options_.business_secret,
                              clock_.NowMs() / 1000, options_.default_tenant);
    if (!claims) {
        return claims.error();
    }
    if (claims->role != kBusinessRole) {
        return MakeError(Errc::kPermissionDenied, "not_business_token",
                         "this token (role '" + (claims->role.empty() ? std::string("user") : claims->role) +
                             "') may not call the business API: it needs role \"business\"");
    }
    return Caller{claims->tenant_id, claims->subject};
}

void BusinessApi::PushMessage(const Caller& caller, const bpb::PushMessageRequest& req,
                              Callback<bpb::PushMessageResponse> done) {
    const auto started = std::chrono::steady_clock::now();
    auto elapsed_us = [started] {
        return static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count());
    };
    auto users = ValidUsers(req.user_ids(), options_.max_users_per_call, /*allow_empty=*/true);
    if (!users) {
        return done(users.error());
    }
    if (auto st = ValidText(req.text(), limits_); !st) {
        return done(st.error());
    }
    if (!req.sender_id().empty() && !IsValidName(req.sender_id())) {
        return done(Invalid("sender_id", "is not a valid id"));
    }
    if (auto st = ValidKey(req.idempotency_key(), false); !st) {
        return done(st.error());
    }
    const std::string sender = req.sender_id().empty() ? caller.subject : req.sender_id();

    if (users->empty()) {  // broadcast: live only
        auto m = std::make_shared<MessageRecord>();
        m->tenant_id = caller.tenant_id;
        m->conversation_id = std::string(kBroadcastConversationId);
        m->conversation_type = ConversationType::kSystem;
        m->server_msg_id = ids_.NewId();
        m->client_msg_id = req.idempotency_key();
        m->sender_id = sender;
        m->sender_device_id = "business";
        m->server_time_ms = clock_.NowMs();
        m->kind = MessageKind::kSystem;
        m->text = req.text();
        push_.Broadcast(std::move(m), [done = std::move(done), elapsed_us](DeliveryStats stats) {
            bpb::PushMessageResponse r;
            r.set_broadcast(true);
            r.set_target_users(static_cast<uint32_t>(stats.users));
            r.set_online_users(static_cast<uint32_t>(stats.users));
            r.set_delivered_devices(static_cast<uint32_t>(stats.devices));
            r.set_offline_users(0);
            r.set_elapsed_us(elapsed_us());
            done(std::move(r));
        });
        return;
    }

    // Named users: each gets the message in its system conversation (stored, so offline users catch up).
    struct State {
        std::mutex mu;
        bpb::PushMessageResponse response;
        std::vector<Result<SendReceipt>> receipts;
        std::vector<uint64_t> devices;
        std::atomic<size_t> left;
        Callback<bpb::PushMessageResponse> done;
    };
    auto state = std::make_shared<State>();
    state->receipts.assign(users->size(), Result<SendReceipt>(MakeError(Errc::kInternal, "", "")));
    state->devices.assign(users->size(), 0);
    state->left = users->size();
    state->done = std::move(done);
    auto shared_users = std::make_shared<const std::vector<std::string>>(std::move(users.value()));
    const std::string key = req.idempotency_key().empty() ? ids_.NewId() : req.idempotency_key();
    for (size_t i = 0; i < shared_users->size(); ++i) {
        SendCommand cmd;
        cmd.sender = Principal{caller.tenant_id, sender, "business"};
        cmd.conversation_id = SystemConversationId((*shared_users)[i]);
        cmd.client_msg_id = "push:" + key;
        cmd.text = req.text();
        cmd.kind = MessageKind::kSystem;
        cmd.check_membership = false;
        auto finish = [state, i, shared_users, elapsed_us](Result<SendReceipt> r) {
            const std::vector<std::string>& users = *shared_users;
            {
                std::lock_guard lock(state->mu);
                state->receipts[i] = std::move(r);
            }
            if (state->left.fetch_sub(1) != 1) {
                return;
            }
            bpb::PushMessageResponse out;
            uint32_t online = 0;
            uint64_t devices = 0;
            for (size_t k = 0; k < users.size(); ++k) {
                const auto& rec = state->receipts[k];
                if (!rec) {
                    return state->done(rec.error());  // nothing partial is reported as success
                }
                auto* pr = out.add_results();
                pr->set_user_id(users[k]);
                pr->set_conversation_id(rec->conversation_id);
                pr->set_seq(rec->seq);
                pr->set_devices(static_cast<uint32_t>(state->devices[k]));
                pr->set_duplicate(rec->duplicate);
                online += state->devices[k] > 0 ? 1 : 0;
                devices += state->devices[k];
            }
            out.set_target_users(static_cast<uint32_t>(users.size()));
            out.set_online_users(online);
            out.set_offline_users(static_cast<uint32_t>(users.size()) - online);
            out.set_delivered_devices(static_cast<uint32_t>(devices));
            out.set_elapsed_us(elapsed_us());
            state->done(std::move(out));
        };
        orchestrator_.Send(std::move(cmd), std::move(finish), [state, i](DeliveryStats stats) {
            std::lock_guard lock(state->mu);
            state->devices[i] = stats.devices;
        });
    }
}

void BusinessApi::SendMessage(const Caller& caller, const bpb::SendMessageRequest& req,
                              Callback<bpb::SendMessageResponse> done) {
    if (req.conversation_id().empty()) {
        return done(Invalid("conversation_id", "is required"));
    }
    if (auto st = ValidText(req.text(), limits_); !st) {
        return done(st.error());
    }
    if (auto st = ValidKey(req.idempotency_key(), true); !st) {
        return done(st.error());
    }
    if (!req.sender_id().empty() && !IsValidName(req.sender_id())) {
        return done(Invalid("sender_id", "'" + Utf8Prefix(req.sender_id(), 80) + "' is not a user id"));
    }
    SendCommand cmd;
    const bool as_system = req.sender_id().empty();
    cmd.sender = Principal{caller.tenant_id, as_system ? caller.subject : req.sender_id(), "business"};
    cmd.conversation_id = req.conversation_id();
    cmd.client_msg_id = req.idempotency_key();
    cmd.text = req.text();
    cmd.kind = as_system ? MessageKind::kSystem : MessageKind::kText;
    cmd.check_membership = !as_system;
    orchestrator_.Send(std::move(cmd), [done = std::move(done)](Result<SendReceipt> r) {
        if (!r) {
            const std::string& reason = r.error().reason;
            return done(reason == "reserved_client_msg_id" || reason == "client_msg_id_too_long"
                            ? NameField(r.error(), "idempotency_key")
                        : reason == "bad_conversation_id" ? NameField(r.error(), "conversation_id")
                                                          : r.error());
        }
        bpb::SendMessageResponse out;
        out.set_conversation_id(r->conversation_id);
        out.set_server_msg_id(r->server_msg_id);
        out.set_seq(r->seq);
        out.set_server_time_ms(r->server_time_ms);
        out.set_duplicate(r->duplicate);
        done(std::move(out));
    });
}

void BusinessApi::QueryUserStatus(const Caller& caller, const bpb::QueryUserStatusRequest& req,
                                  Callback<bpb::QueryUserStatusResponse> done) {
    auto users = ValidUsers(req.user_ids(), 1000, /*allow_empty=*/false);
    if (!users) {
        return done(users.error());
    }
    auto list = std::make_shared<const std::vector<std::string>>(std::move(users.value()));
    presence_.Lookup(caller.tenant_id, list, [list, done = std::move(done)](Result<std::vector<DeviceSession>> devs) {
        if (!devs) {
            return done(devs.error());
        }
        std::map<std::string, std::vector<const DeviceSession*>> by_user;
        for (const auto& d : *devs) {
            by_user[d.user_id].push_back(&d);
        }
        bpb::QueryUserStatusResponse out;
        for (const auto& user : *list) {
            auto* u = out.add_users();
            u->set_user_id(user);
            auto it = by_user.find(user);
            u->set_online(it != by_user.end());
            if (it == by_user.end()) {
                continue;
            }
            for (const DeviceSession* d : it->second) {
                auto* o = u->add_devices();
                o->set_device_id(d->device_id);
                o->set_gateway_id(d->gateway_id);
                o->set_region(d->region);
                o->set_platform(d->platform);
                o->set_since_ms(d->since_ms);
            }
        }
        done(std::move(out));
    });
}

void BusinessApi::KickUser(const Caller& caller, const bpb::KickUserRequest& req,
                           Callback<bpb::KickUserResponse> done) {
    if (!IsValidName(req.user_id())) {
        return done(Invalid("user_id", req.user_id().empty() ? "is required" : "is not a user id"));
    }
    if (!req.device_id().empty() && !IsValidName(req.device_id())) {
        return done(Invalid("device_id", "is not a device id"));
    }
    if (req.reason().size() > 200) {
        return done(Invalid("reason", "is longer than 200 bytes"));
    }
    auto list = std::make_shared<const std::vector<std::string>>(std::vector{req.user_id()});
    presence_.Lookup(caller.tenant_id, list,
                     [this, device = req.device_id(), reason = req.reason(),
                      done = std::move(done)](Result<std::vector<DeviceSession>> devs) mutable {
                         if (!devs) {
                             return done(devs.error());
                         }
                         push_.Kick(std::move(*devs), device, reason, [done](Result<uint32_t> kicked) {
                             if (!kicked) {
                                 return done(kicked.error());
                             }
                             bpb::KickUserResponse out;
                             out.set_kicked_devices(*kicked);
                             done(std::move(out));
                         });
                     });
}

void BusinessApi::GetHistory(const Caller& caller, const bpb::GetHistoryRequest& req,
                             Callback<bpb::GetHistoryResponse> done) {
    if (req.conversation_id().empty()) {
        return done(Invalid("conversation_id", "is required"));
    }
    if (req.limit() > limits_.sync_max_limit) {
        return done(Invalid("limit", "must be 1.." + std::to_string(limits_.sync_max_limit)));
    }
    orchestrator_.ReadHistory(caller.tenant_id, req.conversation_id(), req.after_seq(), req.limit(),
                              [conv = req.conversation_id(), done = std::move(done)](Result<MessagePage> page) {
                                  if (!page) {
                                      return done(NameField(page.error(), "conversation_id"));
                                  }
                                  bpb::GetHistoryResponse out;
                                  out.set_conversation_id(conv);
                                  for (const auto& m : page->messages) {
                                      FillHistory(m, out.add_messages());
                                  }
                                  out.set_has_more(page->has_more);
                                  out.set_last_seq(page->last_seq);
                                  done(std::move(out));
                              });
}

// The system (the caller) manages groups with no role of its own: permissions are the business
// system's to decide.
void BusinessApi::CreateGroup(const Caller& caller, const bpb::CreateGroupRequest& req,
                              Callback<bpb::GroupChangeResponse> done) {
    if (req.owner_id().empty()) {
        return done(Invalid("owner_id", "is required: the user who owns the group"));
    }
    if (static_cast<uint32_t>(req.member_ids_size()) > options_.max_users_per_call) {
        return done(Invalid("member_ids", "at most " + std::to_string(options_.max_users_per_call) + " users per call"));
    }
    if (auto st = ValidKey(req.idempotency_key(), false); !st) {
        return done(st.error());
    }
    GroupCommand cmd;
    cmd.actor = Principal{caller.tenant_id, "", "business"};
    cmd.op = GroupOp::kCreate;
    cmd.owner_id = req.owner_id();
    cmd.name = req.name();
    cmd.group_id = req.group_id();
    cmd.user_ids.assign(req.member_ids().begin(), req.member_ids().end());
    cmd.client_msg_id = req.idempotency_key();
    sessions_.ManageGroup(std::move(cmd), [done = std::move(done)](Result<GroupResult> r) {
        if (!r) {
            return done(r.error());
        }
        done(GroupReply(*r));
    });
}

void BusinessApi::ChangeMembers(const Caller& caller, const bpb::GroupMembersRequest& req, GroupOp op,
                                Callback<bpb::GroupChangeResponse> done) {
    if (req.conversation_id().empty()) {
        return done(Invalid("conversation_id", "is required"));
    }
    if (auto users = ValidUsers(req.user_ids(), options_.max_users_per_call, false); !users.ok()) {
        return done(users.error());
    }
    if (auto st = ValidKey(req.idempotency_key(), false); !st) {
        return done(st.error());
    }
    GroupCommand cmd;
    cmd.actor = Principal{caller.tenant_id, "", "business"};
    cmd.op = op;
    cmd.conversation_id = req.conversation_id();
    cmd.user_ids.assign(req.user_ids().begin(), req.user_ids().end());
    cmd.client_msg_id = req.idempotency_key();
    sessions_.ManageGroup(std::move(cmd), [done = std::move(done)](Result<GroupResult> r) {
        if (!r) {
            return done(r.error().reason == "bad_conversation_id" ? NameField(r.error(), "conversation_id") : r.error());
        }
        done(GroupReply(*r));
    });
}

void BusinessApi::AddGroupMembers(const Caller& caller, const bpb::GroupMembersRequest& req,
                                  Callback<bpb::GroupChangeResponse> done) {
    ChangeMembers(caller, req, GroupOp::kAddMembers, std::move(done));
}

void BusinessApi::RemoveGroupMembers(const Caller& caller, const bpb::GroupMembersRequest& req,
                                     Callback<bpb::GroupChangeResponse> done) {
    ChangeMembers(caller, req, GroupOp::kRemoveMembers, std::move(done));
}

void BusinessApi::ListConversations(const Caller& caller, const bpb::ListConversationsRequest& req,
                                    Callback<bpb::ListConversationsResponse> done) {
    if (!IsValidName(req.user_id())) {
        return done(Invalid("user_id", req.user_id().empty() ? "is required" : "is not a user id"));
    }
    sessions_.ListConversations(
        Principal{caller.tenant_id, req.user_id(), ""}, req.page_token(), req.limit(),
        [done = std::move(done)](Result<ConversationListPage> page) {
            if (!page) {
                const Error& e = page.error();
                return done(e.reason == "bad_page_token" ? NameField(e, "page_token")
                            : e.reason == "limit_too_large" ? NameField(e, "limit")
                                                            : e);
            }
            bpb::ListConversationsResponse out;
            for (const auto& e : page->entries) {
                auto* o = out.add_conversations();
                o->set_conversation_id(e.summary.conversation_id);
                o->set_type(std::string(ConversationTypeName(e.summary.type)));
                o->set_name(e.name);
                o->set_role(std::string(RoleName(e.role)));
                o->set_dissolved(e.dissolved);
                o->set_pinned(e.settings.pinned);
                o->set_muted(e.settings.muted);
                o->set_last_seq(e.summary.last_seq);
                o->set_read_seq(e.read_seq);
                o->set_unread_count(e.unread);
                o->set_unread_mentions(e.unread_mentions);
                if (e.last_message) {
                    FillHistory(*e.last_message, o->mutable_last_message());
                }
                o->set_last_activity_time_ms(e.last_activity_ms);
                o->set_member_count(e.member_count);
            }
            out.set_next_page_token(page->next_page_token);
            done(std::move(out));
        });
}

// Hooks travel as the JSON of their proto, which has the keys of a [[hook]] table: one validation
// (hooks/hook_config.cpp) for the files and the API.
void BusinessApi::PutHook(const Caller& caller, const bpb::PutHookRequest& req, Callback<bpb::PutHookResponse> done) {
    if (hooks_ == nullptr) {
        return done(MakeError(Errc::kUnavailable, "hooks_unavailable", "this server runs no hook engine"));
    }
    if (!req.has_hook()) {
        return done(Invalid("hook", "is required"));
    }
    google::protobuf::util::JsonPrintOptions o;
    o.preserve_proto_field_names = true;
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(req.hook(), &json, o);
    auto spec = hooks::HookFromJson(json);
    if (!spec) {
        return done(Invalid("hook", spec.error().message));
    }
    hooks_->PutHook(caller.tenant_id, std::move(*spec), [done = std::move(done)](Status s) {
        if (!s) {
            return done(s.error());
        }
        done(bpb::PutHookResponse{});
    });
}

void BusinessApi::DeleteHook(const Caller& caller, const bpb::DeleteHookRequest& req,
                             Callback<bpb::DeleteHookResponse> done) {
    if (hooks_ == nullptr) {
        return done(MakeError(Errc::kUnavailable, "hooks_unavailable", "this server runs no hook engine"));
    }
    if (req.name().empty()) {
        return done(Invalid("name", "is required"));
    }
    hooks_->DeleteHook(caller.tenant_id, req.name(), [done = std::move(done)](Status s) {
        if (!s) {
            return done(s.error());
        }
        done(bpb::DeleteHookResponse{});
    });
}

void BusinessApi::ListHooks(const Caller& caller, const bpb::ListHooksRequest&, Callback<bpb::ListHooksResponse> done) {
    if (hooks_ == nullptr) {
        return done(MakeError(Errc::kUnavailable, "hooks_unavailable", "this server runs no hook engine"));
    }
    hooks_->ListHooks(caller.tenant_id, [done = std::move(done)](Result<std::vector<HookSpec>> list) {
        if (!list) {
            return done(list.error());
        }
        bpb::ListHooksResponse out;
        google::protobuf::util::JsonParseOptions jo;
        jo.ignore_unknown_fields = true;
        for (auto& spec : *list) {
            (void)google::protobuf::util::JsonStringToMessage(hooks::HookToJson(spec), out.add_hooks(), jo);
        }
        done(std::move(out));
    });
}

}  // namespace flare::core_gateway
