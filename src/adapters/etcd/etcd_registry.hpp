// ServiceRegistry on etcd 3.4 through its JSON gateway (HTTP/1.1 POST /v3/...): each instance is the key
// <prefix>/services/<service>/<instance_id> holding a JSON object with the instance's fields, attached to
// a lease of its own that this object keeps alive. One worker thread owns the HTTP connection and runs
// the queued calls, the keepalives and the lease re-grants in order; completions run on that thread
// (argument errors, and calls made once shutdown has begun, complete inline on the caller's thread).
// The HTTP client (Beast) lives in etcd_registry.cpp only.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "domain/ports.hpp"

namespace flare {

struct EtcdRegistryOptions {
    // Comma list of http://host:port. A call that cannot reach one endpoint tries the next; the
    // endpoint that last answered is tried first.
    std::string endpoints = "http://127.0.0.1:2379";
    // Keys live under <key_prefix>/services/; a trailing '/' is ignored.
    std::string key_prefix = "/flare";
    // Bounds every call from the moment it is made to its completion, queueing included (a call still
    // queued when its time is up fails without being sent), and every keepalive round.
    std::chrono::milliseconds timeout{2000};
};

// One etcd client endpoint, from "http://host:port".
struct EtcdEndpoint {
    std::string url;   // as written, without a trailing '/'
    std::string host;  // IPv6 without brackets
    std::string port;
};

// Splits and checks the endpoints option. Errors: kInvalidArgument "bad_etcd_endpoints" naming the
// offending entry (not http://, no host, port not in 1..65535, or an empty list). https is not
// supported.
Result<std::vector<EtcdEndpoint>> ParseEtcdEndpoints(std::string_view endpoints);

// Lifecycle and crash semantics:
//  - Register grants a lease with the TTL, puts the key with it and keeps the lease alive every TTL/3
//    (as granted by etcd, which may round a TTL up) until Deregister, Stop or destruction. A keepalive
//    that finds the lease gone (etcd lost it, or keepalives were late by more than the TTL) grants a
//    new lease and puts the key again. Keepalives run between calls on the worker thread, so a call
//    that waits for its timeout delays them: keep TTL > timeout + TTL/3 (with the 2 s default, a TTL of
//    4 s or more) so that a hung etcd request does not cost a lease.
//  - Stop() is the graceful shutdown: it runs the calls already queued, revokes every lease this
//    object holds (its instances disappear at once) and ends the worker.
//  - Destruction without Stop() is what a crash looks like to etcd and is how tests simulate one: the
//    keepalives end and the connection closes, nothing is revoked, so the instances disappear when
//    their leases expire (within one TTL). Calls still queued fail with kUnavailable
//    "registry_stopped"; a call in flight finishes (bounded by `timeout`).
// Errors of every call: kInvalidArgument (ValidateServiceInstance / ValidateRegistryName);
// kUnavailable "etcd_unavailable" when no endpoint could be reached or all said they are unavailable
// (the message names the endpoints and what each did); kDeadlineExceeded "etcd_timeout" when etcd did
// not answer within `timeout` (an endpoint that accepts but never answers uses up that call's budget;
// the next call starts at the next endpoint); kUnavailable "registry_stopped" after Stop() or during
// destruction; "etcd_error" with etcd's gRPC code mapped to Errc when etcd refuses a request, kInternal
// for an answer that cannot be understood. Every callback is invoked exactly once.
// Thread-safety: all methods may be called from any thread, except that Stop() and the destructor
// must not be called from a completion callback (they wait for the worker thread).
class EtcdServiceRegistry final : public ServiceRegistry {
public:
    // Starts the worker thread; no I/O happens until the first call. Throws std::invalid_argument when
    // the endpoints option is malformed (see ParseEtcdEndpoints) or the timeout is not positive.
    explicit EtcdServiceRegistry(EtcdRegistryOptions options);
    ~EtcdServiceRegistry() override;

    EtcdServiceRegistry(const EtcdServiceRegistry&) = delete;
    EtcdServiceRegistry& operator=(const EtcdServiceRegistry&) = delete;

    // Graceful shutdown (see above); returns once the worker has ended. Idempotent.
    void Stop();

    // Registering the same (service, instance_id) again replaces the value and the TTL (a new lease;
    // the old one is revoked). `done` runs once the key is written; the keepalives start then.
    void Register(ServiceInstance instance, std::chrono::seconds ttl, StatusCallback done) override;
    // Ends the keepalive of the instance if this object registered it, revokes its lease and deletes the
    // key (also when another process registered it). Idempotent: an absent key is success. On an error
    // the keepalive has still ended, so the entry expires within its TTL.
    void Deregister(std::string service, std::string instance_id, StatusCallback done) override;
    // The instances of `service` whose leases are alive, ordered by instance_id (a value that is not a
    // valid instance object is skipped and logged).
    void Resolve(std::string service, Callback<std::vector<ServiceInstance>> done) override;

    class Worker;  // etcd_registry.cpp

private:
    std::unique_ptr<Worker> worker_;
};

}  // namespace flare
