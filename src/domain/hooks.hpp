// Hooks: how business systems approve, rewrite and observe what happens in the IM core. The send
// path asks the hook engine before a message is stored (pre-send: allow, reject with a reason, or
// rewrite the text) and tells it afterwards (post-send, delivery, recall, read, reaction, group
// lifecycle and membership); those later calls never wait for any hook. The engine (src/hooks/)
// runs webhooks, gRPC HookExtension services and built-ins; embedded mode runs it in process, the
// distributed deployment in the hook-engine service. No technology headers here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "domain/ports.hpp"

namespace flare {

enum class HookPoint {
    kPreSend = 0,
    kPostSend = 1,
    kDelivery = 2,
    kRecall = 3,
    kRead = 4,
    kReaction = 5,
    kConversationCreated = 6,
    kConversationDissolved = 7,
    kMembershipChanged = 8,
};
inline constexpr int kHookPointCount = 9;
std::string_view HookPointName(HookPoint p);  // "pre_send", "post_send", ...
std::optional<HookPoint> ParseHookPoint(std::string_view s);

// What happened (or, for pre-send, what is about to), as hooks receive it.
struct HookEvent {
    HookPoint point = HookPoint::kPostSend;
    std::string tenant_id;
    std::string conversation_id;
    ConversationType conversation_type = ConversationType::kDirect;
    std::string user_id;    // who acted: sender, reader, recaller, reactor, group actor
    std::string device_id;
    // pre_send: the message as it would be stored (no seq yet); post_send and delivery: as stored;
    // recall, reaction, group events: the stored event.
    MessageRecord message;
    uint64_t seq = 0;                   // read: read up to; recall and reaction: the target message
    std::vector<std::string> user_ids;  // membership: who was added, removed, left, changed
    std::string action;                 // membership: "added", "removed", "left", "role_changed", "muted";
                                        // reaction: "added" / "removed"
    std::string emoji;                  // reaction
    uint64_t devices = 0;               // delivery: devices the message was handed to
    int64_t time_ms = 0;
};

// An event about a stored message (or group event): who, where, when and the message, from it.
HookEvent HookEventFor(HookPoint point, const MessageRecord& m);

struct PreSendVerdict {
    enum class Action { kAllow, kReject, kRewrite };
    Action action = Action::kAllow;
    std::string reason;  // reject: shown to the sender
    std::string text;    // rewrite: the new text
    std::string hook;    // which hook decided (reject / rewrite)
};

// One hook as configured (hooks file, hooks.d/, or the business API).
struct HookSpec {
    std::string name;  // unique within its tenant (or among the file hooks)
    std::vector<HookPoint> points;
    std::string transport;  // "webhook", "grpc", "keyword_filter", "rate_limit"
    std::string url;        // webhook: http://host:port/path
    std::string target;     // grpc: host:port of a HookExtension service
    std::string secret;     // webhook: signs X-Flare-Signature
    // Selector: empty matches all.
    std::vector<std::string> tenants;
    std::vector<ConversationType> conversation_types;
    std::vector<MessageKind> message_kinds;
    int priority = 100;  // lower runs first
    uint32_t timeout_ms = 1000;
    bool fail_open = true;  // pre_send: when the hook fails or times out, allow (true) or reject (false)
    uint32_t max_attempts = 4;  // asynchronous points: tries before giving up (with backoff)
    uint32_t retry_backoff_ms = 200;  // first retry after this, doubling
    // Built-ins.
    std::vector<std::string> keywords;  // keyword_filter: matched case-insensitively
    bool mask = false;                  // keyword_filter: replace them with * instead of rejecting
    uint32_t rate_limit = 0;            // rate_limit: at most this many messages per user...
    uint32_t rate_window_ms = 1000;     // ...per window
    // Where it came from: "file:line" or "api" (then `owner_tenant` is the tenant it belongs to).
    std::string source;
    std::string owner_tenant;
};

// Hook definitions managed at runtime, per tenant (the business API's CreateHook...), kept by the
// message store's database. `spec_json` is opaque to the store.
struct StoredHook {
    std::string tenant_id;
    std::string name;
    std::string spec_json;
};

class HookStore {
public:
    virtual ~HookStore() = default;
    virtual void LoadHooks(Callback<std::vector<StoredHook>> done) = 0;
    // Creates or replaces.
    virtual void SaveHook(StoredHook hook, StatusCallback done) = 0;
    // Errors: kNotFound "unknown_hook".
    virtual void DeleteHook(std::string tenant_id, std::string name, StatusCallback done) = 0;
};

class HookApi {
public:
    virtual ~HookApi() = default;
    // Runs the matching pre-send hooks in priority order; `done` gets the outcome (a rewrite is
    // passed on to the next hook). Errors only for the engine itself being unreachable (the caller
    // then applies fail-open).
    virtual void PreSend(HookEvent event, Callback<PreSendVerdict> done) = 0;
    // Hands an event to the matching asynchronous hooks and returns at once.
    virtual void Publish(HookEvent event) = 0;
    // True when some hook might want this point (callers skip building events otherwise).
    virtual bool Wants(HookPoint point) const = 0;

    // Runtime management, per tenant. Errors: kInvalidArgument naming the field.
    virtual void PutHook(std::string tenant_id, HookSpec spec, StatusCallback done) = 0;
    virtual void DeleteHook(std::string tenant_id, std::string name, StatusCallback done) = 0;
    virtual void ListHooks(std::string tenant_id, Callback<std::vector<HookSpec>> done) = 0;
};

}  // namespace flare
