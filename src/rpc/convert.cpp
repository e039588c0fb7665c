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

}  // namespace flare::rpc
