// The one mapping between the error vocabulary (Errc/Error) and grpc::Status, used by every gRPC
// server and client of the code base. The reason travels as the status's error details.
#pragma once

#include <grpcpp/support/status.h>

#include "common/errc.hpp"

namespace flare::rpc {

grpc::Status ToGrpc(const Error& e);
inline grpc::Status ToGrpc(const Status& s) { return s.ok() ? grpc::Status::OK : ToGrpc(s.error()); }
// A failed call as an Error; `what` names the call for the message ("session.Resolve").
Error FromGrpc(const grpc::Status& s, const char* what);

}  // namespace flare::rpc
