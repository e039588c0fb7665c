#include "gateway/frame_codec.hpp"

#include <google/protobuf/util/json_util.h>

namespace flare::gateway {

namespace {

template <typename Frame>
Result<Frame> Decode(std::string_view payload, bool text) {
    Frame frame;
    if (text) {
        google::protobuf::util::JsonParseOptions options;
        options.ignore_unknown_fields = false;
        auto status = google::protobuf::util::JsonStringToMessage(
            google::protobuf::StringPiece(payload.data(), payload.size()), &frame, options);
        if (!status.ok()) {
            return MakeError(Errc::kInvalidArgument, "malformed_json",
                             "text frame is not a valid JSON frame: " + std::string(status.message()));
        }
        return frame;
    }
    if (!frame.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
        return MakeError(Errc::kInvalidArgument, "malformed_frame",
                         "binary frame is not a valid protobuf " + std::string(Frame::descriptor()->full_name()));
    }
    return frame;
}

template <typename Frame>
std::string Encode(const Frame& frame, bool text) {
    std::string out;
    if (text) {
        google::protobuf::util::JsonPrintOptions options;
        (void)google::protobuf::util::MessageToJsonString(frame, &out, options);
    } else {
        frame.SerializeToString(&out);
    }
    return out;
}

}  // namespace

Result<pb::ClientFrame> DecodeClientFrame(std::string_view payload, bool text) {
    return Decode<pb::ClientFrame>(payload, text);
}
std::string EncodeServerFrame(const pb::ServerFrame& frame, bool text) { return Encode(frame, text); }
Result<pb::ServerFrame> DecodeServerFrame(std::string_view payload, bool text) {
    return Decode<pb::ServerFrame>(payload, text);
}
std::string EncodeClientFrame(const pb::ClientFrame& frame, bool text) { return Encode(frame, text); }

pb::ErrorCode ToProtoCode(Errc code) {
    switch (code) {
        case Errc::kInvalidArgument: return pb::INVALID_ARGUMENT;
        case Errc::kDeadlineExceeded: return pb::DEADLINE_EXCEEDED;
        case Errc::kNotFound: return pb::NOT_FOUND;
        case Errc::kAlreadyExists: return pb::ALREADY_EXISTS;
        case Errc::kPermissionDenied: return pb::PERMISSION_DENIED;
        case Errc::kResourceExhausted: return pb::RESOURCE_EXHAUSTED;
        case Errc::kFailedPrecondition: return pb::FAILED_PRECONDITION;
        case Errc::kUnavailable: return pb::UNAVAILABLE;
        case Errc::kUnauthenticated: return pb::UNAUTHENTICATED;
        case Errc::kOk:
        case Errc::kCancelled:
        case Errc::kInternal: return pb::INTERNAL;
    }
    return pb::INTERNAL;
}

pb::ServerFrame ErrorFrame(const std::string& request_id, const Error& error) {
    pb::ServerFrame f;
    f.set_request_id(request_id);
    auto* e = f.mutable_error();
    e->set_code(ToProtoCode(error.code));
    e->set_reason(error.reason);
    e->set_message(error.message);
    return f;
}

}  // namespace flare::gateway
