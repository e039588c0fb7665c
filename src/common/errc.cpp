#include "common/errc.hpp"

namespace flare {

std::string_view ErrcName(Errc code) {
    switch (code) {
        case Errc::kOk: return "OK";
        case Errc::kCancelled: return "CANCELLED";
        case Errc::kInvalidArgument: return "INVALID_ARGUMENT";
        case Errc::kDeadlineExceeded: return "DEADLINE_EXCEEDED";
        case Errc::kNotFound: return "NOT_FOUND";
        case Errc::kAlreadyExists: return "ALREADY_EXISTS";
        case Errc::kPermissionDenied: return "PERMISSION_DENIED";
        case Errc::kResourceExhausted: return "RESOURCE_EXHAUSTED";
        case Errc::kFailedPrecondition: return "FAILED_PRECONDITION";
        case Errc::kInternal: return "INTERNAL";
        case Errc::kUnavailable: return "UNAVAILABLE";
        case Errc::kUnauthenticated: return "UNAUTHENTICATED";
    }
    return "UNKNOWN";
}

}  // namespace flare
