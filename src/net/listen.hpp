// Listening sockets for the servers (WebSocket gateway, business HTTP API): bind and listen with an
// error that names the address and what to do. Included only by adapter .cpp files (it pulls in Asio).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <string>

#include "common/errc.hpp"

namespace flare::net {

// Errors: kInvalidArgument "bad_listen_address", kUnavailable "listen_failed" (naming `what`,
// the address and, for a port in use, the remedy).
Status BindAndListen(boost::asio::ip::tcp::acceptor& acceptor, const std::string& address, uint16_t port,
                     const std::string& what);
// The bound port, 0 when not bound.
uint16_t BoundPort(const boost::asio::ip::tcp::acceptor& acceptor);

}  // namespace flare::net
