// Frame codec of the client protocol: a binary WebSocket message is one protobuf frame, a text message
// is the same frame in protobuf's JSON mapping. Pure functions, tested without sockets.
#pragma once

#include <string>
#include <string_view>

#include "common/errc.hpp"
#include "flare/client/v1/client.pb.h"

namespace flare::gateway {

namespace pb = ::flare::client::v1;

// Errors: kInvalidArgument "malformed_frame" (binary that is not a ClientFrame) or "malformed_json"
// (text that is not the JSON mapping of a ClientFrame; the message names what the parser rejected).
Result<pb::ClientFrame> DecodeClientFrame(std::string_view payload, bool text);
std::string EncodeServerFrame(const pb::ServerFrame& frame, bool text);

// Decoding on the client side (chatroom_client, tests, flare-bench).
Result<pb::ServerFrame> DecodeServerFrame(std::string_view payload, bool text);
std::string EncodeClientFrame(const pb::ClientFrame& frame, bool text);

pb::ErrorCode ToProtoCode(Errc code);
pb::ServerFrame ErrorFrame(const std::string& request_id, const Error& error);

}  // namespace flare::gateway
