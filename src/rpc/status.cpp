#include "rpc/status.hpp"

namespace flare::rpc {

grpc::Status ToGrpc(const Error& e) {
    grpc::StatusCode code = grpc::StatusCode::INTERNAL;
    switch (e.code) {
        case Errc::kOk: code = grpc::StatusCode::OK; break;
        case Errc::kCancelled: code = grpc::StatusCode::CANCELLED; break;
        case Errc::kInvalidArgument: code = grpc::StatusCode::INVALID_ARGUMENT; break;
        case Errc::kDeadlineExceeded: code = grpc::StatusCode::DEADLINE_EXCEEDED; break;
        case Errc::kNotFound: code = grpc::StatusCode::NOT_FOUND; break;
        case Errc::kAlreadyExists: code = grpc::StatusCode::ALREADY_EXISTS; break;
        case Errc::kPermissionDenied: code = grpc::StatusCode::PERMISSION_DENIED; break;
        case Errc::kResourceExhausted: code = grpc::StatusCode::RESOURCE_EXHAUSTED; break;
        case Errc::kFailedPrecondition: code = grpc::StatusCode::FAILED_PRECONDITION; break;
        case Errc::kInternal: code = grpc::StatusCode::INTERNAL; break;
        case Errc::kUnavailable: code = grpc::StatusCode::UNAVAILABLE; break;
        case Errc::kUnauthenticated: code = grpc::StatusCode::UNAUTHENTICATED; break;
    }
    return grpc::Status(code, e.message, e.reason);
}

Error FromGrpc(const grpc::Status& s, const char* what) {
    Errc code = Errc::kInternal;
    switch (s.error_code()) {
        case grpc::StatusCode::CANCELLED: code = Errc::kCancelled; break;
        case grpc::StatusCode::INVALID_ARGUMENT: code = Errc::kInvalidArgument; break;
        case grpc::StatusCode::DEADLINE_EXCEEDED: code = Errc::kDeadlineExceeded; break;
        case grpc::StatusCode::NOT_FOUND: code = Errc::kNotFound; break;
        case grpc::StatusCode::ALREADY_EXISTS: code = Errc::kAlreadyExists; break;
        case grpc::StatusCode::PERMISSION_DENIED: code = Errc::kPermissionDenied; break;
        case grpc::StatusCode::RESOURCE_EXHAUSTED: code = Errc::kResourceExhausted; break;
        case grpc::StatusCode::FAILED_PRECONDITION: code = Errc::kFailedPrecondition; break;
        case grpc::StatusCode::UNAVAILABLE: code = Errc::kUnavailable; break;
        case grpc::StatusCode::UNAUTHENTICATED: code = Errc::kUnauthenticated; break;
        default: code = Errc::kInternal; break;
    }
    std::string reason = s.error_details();
    if (reason.empty()) {
        // Not one of ours: the transport failed (peer down, deadline) or the server crashed mid-call.
        reason = code == Errc::kDeadlineExceeded ? "service_timeout"
                 : code == Errc::kUnavailable    ? "service_unavailable"
                                                 : "service_error";
        return MakeError(code, reason, std::string(what) + " failed: " + s.error_message());
    }
    return MakeError(code, std::move(reason), s.error_message());
}

}  // namespace flare::rpc
