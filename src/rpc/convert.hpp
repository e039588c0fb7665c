// Domain types <-> the internal protobuf messages (proto/flare/internal/v1/internal.proto).
#pragma once

#include "domain/apis.hpp"
#include "flare/internal/v1/internal.pb.h"

namespace flare::rpc {

namespace ipb = ::flare::internal::v1;

void ToProto(const MessageRecord& m, ipb::Message* out);
MessageRecord FromProto(const ipb::Message& m);
void ToProto(const DeviceSession& d, ipb::DeviceSession* out);
DeviceSession FromProto(const ipb::DeviceSession& d);
void ToProto(const Principal& p, ipb::Principal* out);
Principal FromProto(const ipb::Principal& p);
void ToProto(const FanoutPlan& p, ipb::FanoutPlan* out);
FanoutPlan FromProto(const ipb::FanoutPlan& p);
std::vector<DeviceSession> FromProto(const ipb::DeviceList& l);
void ToProto(const std::vector<DeviceSession>& l, ipb::DeviceList* out);

}  // namespace flare::rpc
