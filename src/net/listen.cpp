#include "net/listen.hpp"

namespace flare::net {

Status BindAndListen(boost::asio::ip::tcp::acceptor& a, const std::string& address, uint16_t port,
                     const std::string& what) {
    using tcp = boost::asio::ip::tcp;
    boost::system::error_code ec;
    auto addr = boost::asio::ip::make_address(address, ec);
    if (ec) {
        return MakeError(Errc::kInvalidArgument, "bad_listen_address",
                         what + " listen address '" + address + "' is not an IP address");
    }
    tcp::endpoint ep(addr, port);
    const char* step = "open";
    a.open(ep.protocol(), ec);
    if (!ec) {
        a.set_option(tcp::acceptor::reuse_address(true), ec);
        step = "bind";
        a.bind(ep, ec);
    }
    if (!ec) {
        step = "listen on";
        a.listen(boost::asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
        return MakeError(Errc::kUnavailable, "listen_failed",
                         what + ": cannot " + step + " " + address + ":" + std::to_string(port) + ": " + ec.message() +
                             (ec == boost::asio::error::address_in_use
                                  ? " (another process holds the port: stop it or choose another port)"
                                  : ""));
    }
    return {};
}

uint16_t BoundPort(const boost::asio::ip::tcp::acceptor& a) {
    boost::system::error_code ec;
    auto ep = a.local_endpoint(ec);
    return ec ? 0 : ep.port();
}

}  // namespace flare::net
