// Domain hook types <-> proto/flare/hooks/v1/hooks.proto (what webhooks and gRPC hooks receive,
// and what the hook-engine service is called with).
#pragma once

#include "domain/hooks.hpp"
#include "flare/hooks/v1/hooks.pb.h"

namespace flare::hooks {

namespace hpb = ::flare::hooks::v1;

void ToProto(const HookEvent& e, hpb::HookEvent* out);
HookEvent FromProto(const hpb::HookEvent& e);
void ToProto(const PreSendVerdict& v, hpb::PreSendReply* out);
// Errors: kInvalidArgument for an unknown action.
Result<PreSendVerdict> FromProto(const hpb::PreSendReply& r);

// The webhook body: `e` as JSON (field names as in hooks.proto).
std::string EventJson(const hpb::HookEvent& e);

}  // namespace flare::hooks
