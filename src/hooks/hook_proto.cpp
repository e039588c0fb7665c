#include "hooks/hook_proto.hpp"

#include <google/protobuf/util/json_util.h>

namespace flare::hooks {


void ToProto(const HookEvent& e, hpb::HookEvent* out) {
    out->set_point(std::string(HookPointName(e.point)));
    out->set_tenant_id(e.tenant_id);
    out->set_conversation_id(e.conversation_id);
    out->set_conversation_type(std::string(ConversationTypeName(e.conversation_type)));
    out->set_user_id(e.user_id);
    out->set_device_id(e.device_id);
    out->set_time_ms(e.time_ms);
    const MessageRecord& m = e.message;
    auto* pm = out->mutable_message();
    pm->set_conversation_id(m.conversation_id);
    pm->set_conversation_type(std::string(ConversationTypeName(m.conversation_type)));
    pm->set_seq(m.seq);
    pm->set_server_msg_id(m.server_msg_id);
    pm->set_client_msg_id(m.client_msg_id);
    pm->set_sender_id(m.sender_id);
    pm->set_sender_device_id(m.sender_device_id);
    pm->set_server_time_ms(m.server_time_ms);
    pm->set_kind(std::string(MessageKindName(m.kind)));
    pm->set_text(m.text);
    for (const auto& u : m.mentions) {
        pm->add_mentions(u);
    }
    pm->set_mention_all(m.mention_all);
    if (m.kind == MessageKind::kEvent) {
        pm->set_event_type(std::string(EventTypeName(m.event.type)));
        pm->set_target_seq(m.event.target_seq);
        if (m.event.type == EventType::kEdited) {
            pm->set_text(m.event.text);  // the new text
        }
    }
    out->set_seq(e.seq);
    for (const auto& u : e.user_ids) {
        out->add_user_ids(u);
    }
    out->set_action(e.action);
    out->set_emoji(e.emoji);
    out->set_devices(e.devices);
}

HookEvent FromProto(const hpb::HookEvent& p) {
    HookEvent e;
    e.point = ParseHookPoint(p.point()).value_or(HookPoint::kPostSend);
    e.tenant_id = p.tenant_id();
    e.conversation_id = p.conversation_id();
    e.conversation_type = ParseConversationTypeName(p.conversation_type()).value_or(ConversationType::kDirect);
    e.user_id = p.user_id();
    e.device_id = p.device_id();
    e.time_ms = p.time_ms();
    const auto& pm = p.message();
    MessageRecord& m = e.message;
    m.tenant_id = p.tenant_id();
    m.conversation_id = pm.conversation_id();
    m.conversation_type = ParseConversationTypeName(pm.conversation_type()).value_or(ConversationType::kDirect);
    m.seq = pm.seq();
    m.server_msg_id = pm.server_msg_id();
    m.client_msg_id = pm.client_msg_id();
    m.sender_id = pm.sender_id();
    m.sender_device_id = pm.sender_device_id();
    m.server_time_ms = pm.server_time_ms();
    m.kind = ParseMessageKindName(pm.kind()).value_or(MessageKind::kText);
    m.text = pm.text();
    m.mentions.assign(pm.mentions().begin(), pm.mentions().end());
    m.mention_all = pm.mention_all();
    m.event.target_seq = pm.target_seq();
    m.event.type = ParseEventTypeName(pm.event_type()).value_or(EventType::kNone);
    if (m.event.type == EventType::kEdited) {
        m.event.text = std::move(m.text);
        m.text.clear();
    }
    m.event.user_ids.assign(p.user_ids().begin(), p.user_ids().end());
    if (m.event.type == EventType::kReactionAdded || m.event.type == EventType::kReactionRemoved) {
        m.event.text = p.emoji();
    }
    e.seq = p.seq();
    e.user_ids.assign(p.user_ids().begin(), p.user_ids().end());
    e.action = p.action();
    e.emoji = p.emoji();
    e.devices = p.devices();
    return e;
}

void ToProto(const PreSendVerdict& v, hpb::PreSendReply* out) {
    switch (v.action) {
        case PreSendVerdict::Action::kAllow: out->set_action("allow"); break;
        case PreSendVerdict::Action::kReject: out->set_action("reject"); break;
        case PreSendVerdict::Action::kRewrite: out->set_action("rewrite"); break;
    }
    out->set_reason(v.reason);
    out->set_text(v.text);
    out->set_hook(v.hook);
}

Result<PreSendVerdict> FromProto(const hpb::PreSendReply& r) {
    PreSendVerdict v;
    v.reason = r.reason();
    v.text = r.text();
    v.hook = r.hook();
    if (r.action().empty() || r.action() == "allow") {
        v.action = PreSendVerdict::Action::kAllow;
    } else if (r.action() == "reject") {
        v.action = PreSendVerdict::Action::kReject;
    } else if (r.action() == "rewrite") {
        v.action = PreSendVerdict::Action::kRewrite;
    } else {
        return MakeError(Errc::kInvalidArgument, "bad_hook_reply",
                         "action '" + Utf8Prefix(r.action(), 40) + "' is not allow, reject or rewrite");
    }
    return v;
}

std::string EventJson(const hpb::HookEvent& e) {
    google::protobuf::util::JsonPrintOptions o;
    o.preserve_proto_field_names = true;
    std::string out;
    (void)google::protobuf::util::MessageToJsonString(e, &out, o);
    return out;
}

}  // namespace flare::hooks
