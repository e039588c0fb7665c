// Domain types <-> the internal protobuf messages (proto/flare/internal/v1/internal.proto).
#pragma once

#include "domain/apis.hpp"
#include "flare/internal/v1/internal.pb.h"

namespace flare::rpc {

namespace ipb = ::flare::internal::v1;

void ToProto(const MessageRecord& m, ipb::Message* out);
MessageRecord FromProto(const ipb::Message& m);
void ToProto(const MessageEvent& e, ipb::Event* out);
MessageEvent FromProto(const ipb::Event& e);
void ToProto(const DeviceSession& d, ipb::DeviceSession* out);
DeviceSession FromProto(const ipb::DeviceSession& d);
void ToProto(const Principal& p, ipb::Principal* out);
Principal FromProto(const ipb::Principal& p);
void ToProto(const FanoutPlan& p, ipb::FanoutPlan* out);
FanoutPlan FromProto(const ipb::FanoutPlan& p);
std::vector<DeviceSession> FromProto(const ipb::DeviceList& l);
void ToProto(const GroupCommand& c, ipb::GroupCommand* out);
GroupCommand FromProto(const ipb::GroupCommand& c);
void ToProto(const UserStateCommand& c, ipb::UserStateCommand* out);
UserStateCommand FromProto(const ipb::UserStateCommand& c);
void ToProto(const ConversationListPage& p, ipb::ConversationListPage* out);
ConversationListPage FromProto(const ipb::ConversationListPage& p);
void ToProto(const MessageDetail& d, ipb::MessageDetail* out);
MessageDetail FromProto(const ipb::MessageDetail& d);
void ToProto(const ResolvedConversation& c, ipb::ResolveReply* out);
ResolvedConversation FromProto(const ipb::ResolveReply& r);
void ToProto(const std::vector<DeviceSession>& l, ipb::DeviceList* out);

}  // namespace flare::rpc
