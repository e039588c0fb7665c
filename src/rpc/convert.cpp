#include "rpc/convert.hpp"

namespace flare::rpc {

void ToProto(const MessageRecord& m, ipb::Message* out) {
    out->set_tenant_id(m.tenant_id);
    out->set_conversation_id(m.conversation_id);
    out->set_conversation_type(static_cast<int32_t>(m.conversation_type));
    out->set_seq(m.seq);
    out->set_server_msg_id(m.server_msg_id);
    out->set_client_msg_id(m.client_msg_id);
    out->set_sender_id(m.sender_id);
    out->set_sender_device_id(m.sender_device_id);
    out->set_server_time_ms(m.server_time_ms);
    out->set_kind(static_cast<int32_t>(m.kind));
    out->set_text(m.text);
    for (const auto& u : m.mentions) {
        out->add_mentions(u);
    }
    out->set_mention_all(m.mention_all);
    if (m.event.type != EventType::kNone) {
        ToProto(m.event, out->mutable_event());
    }
    out->set_recalled(m.recalled);
    out->set_deleted(m.deleted);
    out->set_deleted_for_me(m.deleted_for_me);
    out->set_edit_version(m.edit_version);
    out->set_edited_ms(m.edited_ms);
    for (const auto& r : m.reactions) {
        auto* o = out->add_reactions();
        o->set_emoji(r.emoji);
        for (const auto& u : r.user_ids) {
            o->add_user_ids(u);
        }
    }
}

void ToProto(const MessageEvent& e, ipb::Event* out) {
    out->set_type(static_cast<int32_t>(e.type));
    out->set_target_seq(e.target_seq);
    for (const auto& u : e.user_ids) {
        out->add_user_ids(u);
    }
    out->set_text(e.text);
    out->set_role(static_cast<int32_t>(e.role));
    out->set_until_ms(e.until_ms);
    out->set_active(e.active);
    for (uint64_t s : e.seqs) {
        out->add_seqs(s);
    }
    if (e.pinned) {
        out->set_pinned(*e.pinned);
    }
    if (e.muted) {
        out->set_muted(*e.muted);
    }
}

MessageEvent FromProto(const ipb::Event& e) {
    MessageEvent out;
    out.type = static_cast<EventType>(e.type());
    out.target_seq = e.target_seq();
    out.user_ids.assign(e.user_ids().begin(), e.user_ids().end());
    out.text = e.text();
    out.role = static_cast<MemberRole>(e.role());
    out.until_ms = e.until_ms();
    out.active = e.active();
    out.seqs.assign(e.seqs().begin(), e.seqs().end());
    if (e.has_pinned()) {
        out.pinned = e.pinned();
    }
    if (e.has_muted()) {
        out.muted = e.muted();
    }
    return out;
}

MessageRecord FromProto(const ipb::Message& m) {
    MessageRecord r;
    r.tenant_id = m.tenant_id();
    r.conversation_id = m.conversation_id();
    r.conversation_type = static_cast<ConversationType>(m.conversation_type());
    r.seq = m.seq();
    r.server_msg_id = m.server_msg_id();
    r.client_msg_id = m.client_msg_id();
    r.sender_id = m.sender_id();
    r.sender_device_id = m.sender_device_id();
    r.server_time_ms = m.server_time_ms();
    r.kind = static_cast<MessageKind>(m.kind());
    r.text = m.text();
    r.mentions.assign(m.mentions().begin(), m.mentions().end());
    r.mention_all = m.mention_all();
    if (m.has_event()) {
        r.event = FromProto(m.event());
    }
    r.recalled = m.recalled();
    r.deleted = m.deleted();
    r.deleted_for_me = m.deleted_for_me();
    r.edit_version = m.edit_version();
    r.edited_ms = m.edited_ms();
    for (const auto& x : m.reactions()) {
        r.reactions.push_back(Reaction{x.emoji(), {x.user_ids().begin(), x.user_ids().end()}});
    }
    return r;
}

void ToProto(const DeviceSession& d, ipb::DeviceSession* out) {
    out->set_tenant_id(d.tenant_id);
    out->set_user_id(d.user_id);
    out->set_device_id(d.device_id);
    out->set_platform(d.platform);
    out->set_gateway_id(d.gateway_id);
    out->set_region(d.region);
    out->set_connection_id(d.connection_id);
    out->set_since_ms(d.since_ms);
}

DeviceSession FromProto(const ipb::DeviceSession& d) {
    return DeviceSession{d.tenant_id(), d.user_id(),   d.device_id(),     d.platform(),
                         d.gateway_id(), d.region(), d.connection_id(), d.since_ms()};
}

void ToProto(const Principal& p, ipb::Principal* out) {
    out->set_tenant_id(p.tenant_id);
    out->set_user_id(p.user_id);
    out->set_device_id(p.device_id);
}

Principal FromProto(const ipb::Principal& p) { return Principal{p.tenant_id(), p.user_id(), p.device_id()}; }

void ToProto(const FanoutPlan& p, ipb::FanoutPlan* out) {
    if (p.recipients) {
        out->mutable_recipients()->Reserve(static_cast<int>(p.recipients->size()));
        for (const auto& u : *p.recipients) {
            out->add_recipients(u);
        }
    }
    out->set_skip_gateway_id(p.skip_gateway_id);
    out->set_skip_connection_id(p.skip_connection_id);
}

FanoutPlan FromProto(const ipb::FanoutPlan& p) {
    auto users = std::make_shared<std::vector<std::string>>(p.recipients().begin(), p.recipients().end());
    return FanoutPlan{std::move(users), p.skip_gateway_id(), p.skip_connection_id()};
}

std::vector<DeviceSession> FromProto(const ipb::DeviceList& l) {
    std::vector<DeviceSession> out;
    out.reserve(static_cast<size_t>(l.devices_size()));
    for (const auto& d : l.devices()) {
        out.push_back(FromProto(d));
    }
    return out;
}

void ToProto(const std::vector<DeviceSession>& l, ipb::DeviceList* out) {
    for (const auto& d : l) {
        ToProto(d, out->add_devices());
    }
}

void ToProto(const GroupCommand& c, ipb::GroupCommand* out) {
    ToProto(c.actor, out->mutable_actor());
    out->set_gateway_id(c.gateway_id);
    out->set_connection_id(c.connection_id);
    out->set_op(static_cast<int32_t>(c.op));
    out->set_conversation_id(c.conversation_id);
    out->set_group_id(c.group_id);
    out->set_name(c.name);
    out->set_owner_id(c.owner_id);
    for (const auto& u : c.user_ids) {
        out->add_user_ids(u);
    }
    out->set_role(static_cast<int32_t>(c.role));
    out->set_mute_ms(c.mute_ms);
    out->set_client_msg_id(c.client_msg_id);
}

GroupCommand FromProto(const ipb::GroupCommand& c) {
    GroupCommand out;
    out.actor = FromProto(c.actor());
    out.gateway_id = c.gateway_id();
    out.connection_id = c.connection_id();
    out.op = static_cast<GroupOp>(c.op());
    out.conversation_id = c.conversation_id();
    out.group_id = c.group_id();
    out.name = c.name();
    out.owner_id = c.owner_id();
    out.user_ids.assign(c.user_ids().begin(), c.user_ids().end());
    out.role = static_cast<MemberRole>(c.role());
    out.mute_ms = c.mute_ms();
    out.client_msg_id = c.client_msg_id();
    return out;
}

void ToProto(const UserStateCommand& c, ipb::UserStateCommand* out) {
    ToProto(c.who, out->mutable_who());
    out->set_gateway_id(c.gateway_id);
    out->set_connection_id(c.connection_id);
    out->set_op(static_cast<int32_t>(c.op));
    out->set_conversation_id(c.conversation_id);
    out->set_seq(c.seq);
    for (uint64_t s : c.seqs) {
        out->add_seqs(s);
    }
    if (c.pinned) {
        out->set_pinned(*c.pinned);
    }
    if (c.muted) {
        out->set_muted(*c.muted);
    }
    out->set_active(c.active);
}

UserStateCommand FromProto(const ipb::UserStateCommand& c) {
    UserStateCommand out;
    out.who = FromProto(c.who());
    out.gateway_id = c.gateway_id();
    out.connection_id = c.connection_id();
    out.op = static_cast<UserOp>(c.op());
    out.conversation_id = c.conversation_id();
    out.seq = c.seq();
    out.seqs.assign(c.seqs().begin(), c.seqs().end());
    if (c.has_pinned()) {
        out.pinned = c.pinned();
    }
    if (c.has_muted()) {
        out.muted = c.muted();
    }
    out.active = c.active();
    return out;
}

void ToProto(const ConversationListPage& p, ipb::ConversationListPage* out) {
    for (const auto& e : p.entries) {
        auto* o = out->add_entries();
        o->mutable_summary()->set_conversation_id(e.summary.conversation_id);
        o->mutable_summary()->set_type(static_cast<int32_t>(e.summary.type));
        o->mutable_summary()->set_last_seq(e.summary.last_seq);
        o->set_name(e.name);
        o->set_role(static_cast<int32_t>(e.role));
        o->set_dissolved(e.dissolved);
        o->set_pinned(e.settings.pinned);
        o->set_muted(e.settings.muted);
        o->set_read_seq(e.read_seq);
        o->set_peer_read_seq(e.peer_read_seq);
        o->set_unread(e.unread);
        o->set_unread_mentions(e.unread_mentions);
        if (e.last_message) {
            ToProto(*e.last_message, o->mutable_last_message());
        }
        o->set_last_activity_ms(e.last_activity_ms);
        o->set_member_count(e.member_count);
    }
    out->set_next_page_token(p.next_page_token);
}

ConversationListPage FromProto(const ipb::ConversationListPage& p) {
    ConversationListPage out;
    for (const auto& o : p.entries()) {
        ConversationListEntry e;
        e.summary = ConversationSummary{o.summary().conversation_id(),
                                        static_cast<ConversationType>(o.summary().type()), o.summary().last_seq()};
        e.name = o.name();
        e.role = static_cast<MemberRole>(o.role());
        e.dissolved = o.dissolved();
        e.settings = UserSettings{o.pinned(), o.muted()};
        e.read_seq = o.read_seq();
        e.peer_read_seq = o.peer_read_seq();
        e.unread = o.unread();
        e.unread_mentions = o.unread_mentions();
        if (o.has_last_message()) {
            e.last_message = FromProto(o.last_message());
        }
        e.last_activity_ms = o.last_activity_ms();
        e.member_count = o.member_count();
        out.entries.push_back(std::move(e));
    }
    out.next_page_token = p.next_page_token();
    return out;
}

void ToProto(const MessageDetail& d, ipb::MessageDetail* out) {
    ToProto(d.message, out->mutable_message());
    for (const auto& e : d.edits) {
        auto* o = out->add_edits();
        o->set_version(e.version);
        o->set_text(e.text);
        o->set_time_ms(e.time_ms);
    }
    for (const auto& u : d.read_by) {
        out->add_read_by(u);
    }
    out->set_member_count(d.member_count);
}

MessageDetail FromProto(const ipb::MessageDetail& d) {
    MessageDetail out;
    out.message = FromProto(d.message());
    for (const auto& e : d.edits()) {
        out.edits.push_back(MessageEdit{e.version(), e.text(), e.time_ms()});
    }
    out.read_by.assign(d.read_by().begin(), d.read_by().end());
    out.member_count = d.member_count();
    return out;
}

void ToProto(const ResolvedConversation& c, ipb::ResolveReply* resp) {
    resp->set_type(static_cast<int32_t>(c.ref.type));
    resp->set_conversation_id(c.ref.id);
    resp->set_a(c.ref.a);
    resp->set_b(c.ref.b);
    resp->set_name(c.ref.name);
    if (c.members) {
        resp->mutable_members()->Add(c.members->begin(), c.members->end());
    }
    resp->set_exists(c.exists);
    if (c.group) {
        resp->set_group(true);
        resp->set_group_name(c.group->name);
        resp->set_dissolved(c.group->dissolved);
        for (const auto& [user, meta] : c.group->meta) {
            auto* m = resp->add_meta();
            m->set_user_id(user);
            m->set_role(static_cast<int32_t>(meta.role));
            m->set_muted_until_ms(meta.muted_until_ms);
        }
    }
}

ResolvedConversation FromProto(const ipb::ResolveReply& r) {
    ResolvedConversation out;
    out.ref.type = static_cast<ConversationType>(r.type());
    out.ref.id = r.conversation_id();
    out.ref.a = r.a();
    out.ref.b = r.b();
    out.ref.name = r.name();
    out.members = std::make_shared<std::vector<std::string>>(r.members().begin(), r.members().end());
    out.exists = r.exists();
    if (r.group()) {
        auto g = std::make_shared<GroupInfo>();
        g->name = r.group_name();
        g->dissolved = r.dissolved();
        for (const auto& m : r.meta()) {
            g->meta.emplace(m.user_id(), MemberMeta{static_cast<MemberRole>(m.role()), m.muted_until_ms()});
        }
        out.group = std::move(g);
    }
    return out;
}

}  // namespace flare::rpc
