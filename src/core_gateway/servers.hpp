// Hosting of the business API: a gRPC server (BusinessService, reflection, standard health service)
// and an HTTP/JSON mirror (POST /api/v1/<Method>, protobuf JSON mapping). gRPC and Beast headers stay
// in the .cpp files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core_gateway/business_api.hpp"

namespace boost::asio {
class io_context;
}

namespace flare::core_gateway {

class GrpcServer {
public:
    explicit GrpcServer(BusinessApi& api);
    ~GrpcServer();
    // Binds address:port (port 0 picks one). Errors: kUnavailable naming the address.
    Status Start(const std::string& address, uint16_t port);
    uint16_t port() const;
    void Stop();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

class HttpApiServer {
public:
    HttpApiServer(boost::asio::io_context& io, BusinessApi& api);
    ~HttpApiServer();
    Status Listen(const std::string& address, uint16_t port);
    uint16_t port() const;
    void Start();
    void Stop();

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace flare::core_gateway
