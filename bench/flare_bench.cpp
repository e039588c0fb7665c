// flare-bench: a load generator that speaks the real client protocol (binary protobuf frames over
// WebSocket) against a running Flare IM Core, and checks what it receives: counts, order, no
// duplicates. A run that delivers wrong data fails (exit 1) whatever its speed.
//
//   flare-bench SCENARIO [options]      scenarios: idle, direct, room, churn; webhook (a receiver)
//
// Every scenario is bounded in time and count and targets loopback only.
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <deque>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "auth/jwt.hpp"
#include "common/clock.hpp"
#include "domain/types.hpp"
#include "flare/client/v1/client.pb.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace http = beast::http;
using tcp = asio::ip::tcp;
namespace pb = flare::client::v1;
using SteadyClock = std::chrono::steady_clock;

int64_t NowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now().time_since_epoch()).count();
}

struct Options {
    std::string scenario;
    std::string host = "127.0.0.1";
    uint16_t port = 60051;
    std::string secret = "insecure-secret";
    int sources = 4;            // 127.0.0.(1..sources) as source addresses
    int connections = 1000;     // idle
    int pairs = 50;             // direct
    int members = 1000;         // room
    int users = 50;             // churn
    int64_t rate = 0;           // messages/s in total; 0 = as fast as the window allows
    int window = 16;            // unanswered sends per sender when rate = 0
    double duration_s = 10;
    int64_t max_messages = 1'000'000;
    size_t text_bytes = 0;      // direct: pad each message's text with 'a' to this size
    int server_pid = 0;         // for RSS and CPU
    std::string run_id;
    bool batch = true;               // ask the server to batch queued frames (?batch=1)
    std::string protocol = "flare";  // or "xmpp" (direct and idle): a minimal XMPP client, for ejabberd
    std::string xmpp_domain = "localhost";
};

// ------------------------------------------------------------------------------------- connection

class Conn : public std::enable_shared_from_this<Conn> {
public:
    using FrameFn = std::function<void(const pb::ServerFrame&)>;
    using ErrorFn = std::function<void(const std::string&)>;

    Conn(asio::io_context& io) : ws_(io) {}

    void Open(const Options& o, const std::string& source_ip, const std::string& user, const std::string& device,
              FrameFn on_frame, ErrorFn on_error) {
        on_frame_ = std::move(on_frame);
        on_error_ = std::move(on_error);
        const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
        target_ = "/?token=" + flare::MintToken(o.secret, user, "bench", now_s + 3600, device) +
                  (o.batch ? "&batch=1" : "");
        host_ = o.host;
        beast::error_code ec;
        auto& sock = beast::get_lowest_layer(ws_).socket();
        sock.open(tcp::v4(), ec);
        if (!ec) {
            int one = 1;
            // SO_REUSEADDR: this client's TIME_WAIT sockets must not keep a server from binding a fixed
            // port later (the guide's ports lie in the ephemeral range the load generator draws from).
            sock.set_option(tcp::socket::reuse_address(true), ec);
            ::setsockopt(sock.native_handle(), IPPROTO_IP, 24 /* IP_BIND_ADDRESS_NO_PORT */, &one, sizeof one);
            sock.bind(tcp::endpoint(asio::ip::make_address(source_ip), 0), ec);
        }
        if (ec) {
            return on_error_("bind " + source_ip + ": " + ec.message());
        }
        tcp::endpoint ep(asio::ip::make_address(o.host), o.port);
        beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(10));
        beast::get_lowest_layer(ws_).async_connect(ep, [self = shared_from_this()](beast::error_code ec) {
            if (ec) {
                return self->on_error_("connect: " + ec.message());
            }
            beast::get_lowest_layer(self->ws_).socket().set_option(tcp::no_delay(true));
            beast::get_lowest_layer(self->ws_).expires_never();
            self->ws_.binary(true);
            self->ws_.async_handshake(self->host_, self->target_, [self](beast::error_code ec) {
                if (ec) {
                    return self->on_error_("handshake: " + ec.message());
                }
                self->Read();
            });
        });
    }

    void Send(const pb::ClientFrame& f) {
        auto data = std::make_shared<std::string>(f.SerializeAsString());
        out_.push_back(std::move(data));
        if (!writing_) {
            Write();
        }
    }

    void Close() {
        closed_ = true;
        beast::error_code ec;
        beast::get_lowest_layer(ws_).socket().close(ec);
    }

private:
    void Read() {
        ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) {
                if (!self->closed_) {
                    self->on_error_("read: " + ec.message());
                }
                return;
            }
            pb::ServerFrame f;
            auto d = self->buf_.cdata();
            if (!f.ParseFromArray(d.data(), static_cast<int>(d.size()))) {
                return self->on_error_("undecodable frame");
            }
            self->buf_.consume(self->buf_.size());
            if (f.has_batch()) {
                for (const auto& inner : f.batch().frames()) {
                    self->on_frame_(inner);
                }
            } else {
                self->on_frame_(f);
            }
            self->Read();
        });
    }
    void Write() {
        writing_ = true;
        ws_.async_write(asio::buffer(*out_.front()), [self = shared_from_this()](beast::error_code ec, size_t) {
            self->out_.pop_front();
            if (ec) {
                self->writing_ = false;
                return;
            }
            if (self->out_.empty()) {
                self->writing_ = false;
            } else {
                self->Write();
            }
        });
    }

    websocket::stream<beast::tcp_stream> ws_;
    beast::flat_buffer buf_;
    std::deque<std::shared_ptr<std::string>> out_;
    bool writing_ = false, closed_ = false;
    FrameFn on_frame_;
    ErrorFn on_error_;
    std::string host_, target_;
};

// A minimal XMPP client (RFC 6120): SASL ANONYMOUS, resource binding, <message> stanzas. Just enough to
// drive the same 1:1 workload against an XMPP server (ejabberd) as against Flare.
class XmppConn : public std::enable_shared_from_this<XmppConn> {
public:
    using ReadyFn = std::function<void(const std::string& jid)>;
    using BodyFn = std::function<void(const std::string& body)>;
    using ErrorFn = std::function<void(const std::string&)>;

    explicit XmppConn(asio::io_context& io) : sock_(io) {}

    void Open(const Options& o, const std::string& source_ip, ReadyFn ready, BodyFn body, ErrorFn err) {
        ready_ = std::move(ready);
        body_ = std::move(body);
        err_ = std::move(err);
        domain_ = o.xmpp_domain;
        beast::error_code ec;
        sock_.open(tcp::v4(), ec);
        int one = 1;
        sock_.set_option(tcp::socket::reuse_address(true), ec);  // see the WebSocket client above
        ::setsockopt(sock_.native_handle(), IPPROTO_IP, 24 /* IP_BIND_ADDRESS_NO_PORT */, &one, sizeof one);
        sock_.bind(tcp::endpoint(asio::ip::make_address(source_ip), 0), ec);
        if (ec) {
            return err_("bind: " + ec.message());
        }
        sock_.async_connect(tcp::endpoint(asio::ip::make_address(o.host), o.port),
                            [self = shared_from_this()](beast::error_code ec) {
                                if (ec) {
                                    return self->err_("connect: " + ec.message());
                                }
                                self->sock_.set_option(tcp::no_delay(true));
                                self->Write(self->StreamHeader());
                                self->Read();
                            });
    }

    void SendMessage(const std::string& to, const std::string& id, const std::string& body) {
        Write("<message to='" + to + "' id='" + id + "' type='chat'><body>" + body + "</body></message>");
    }
    void Ping() { Write(" "); }  // whitespace keep-alive
    void Close() {
        closed_ = true;
        beast::error_code ec;
        sock_.close(ec);
    }

private:
    std::string StreamHeader() const {
        return "<?xml version='1.0'?><stream:stream to='" + domain_ +
               "' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    }
    void Write(std::string data) {
        out_.push_back(std::make_shared<std::string>(std::move(data)));
        if (!writing_) {
            DoWrite();
        }
    }
    void DoWrite() {
        writing_ = true;
        asio::async_write(sock_, asio::buffer(*out_.front()), [self = shared_from_this()](beast::error_code ec, size_t) {
            self->out_.pop_front();
            if (ec || self->out_.empty()) {
                self->writing_ = false;
                return;
            }
            self->DoWrite();
        });
    }
    void Read() {
        sock_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](beast::error_code ec, size_t n) {
            if (ec) {
                if (!self->closed_) {
                    self->err_("read: " + ec.message());
                }
                return;
            }
            self->in_.append(self->buf_.data(), n);
            self->Process();
            self->Read();
        });
    }
    void Process() {
        for (;;) {
            if (state_ == 0 || state_ == 2) {  // waiting for stream features
                auto end = in_.find("</stream:features>");
                if (end == std::string::npos) {
                    return;
                }
                in_.erase(0, end + 18);
                if (state_ == 0) {
                    Write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>");
                    state_ = 1;
                } else {
                    Write("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
                    state_ = 3;
                }
            } else if (state_ == 1) {
                if (in_.find("<failure") != std::string::npos) {
                    return err_("SASL ANONYMOUS refused");
                }
                auto ok = in_.find("<success");
                if (ok == std::string::npos) {
                    return;
                }
                auto end = in_.find('>', ok);
                if (end == std::string::npos) {
                    return;
                }
                in_.erase(0, end + 1);
                Write(StreamHeader());
                state_ = 2;
            } else if (state_ == 3) {
                auto b = in_.find("<jid>"), e = in_.find("</jid>");
                if (b == std::string::npos || e == std::string::npos) {
                    return;
                }
                jid_ = in_.substr(b + 5, e - b - 5);
                auto close = in_.find("</iq>", e);
                in_.erase(0, close == std::string::npos ? e + 6 : close + 5);
                state_ = 4;
                ready_(jid_);
            } else {
                auto e = in_.find("</message>");
                if (e == std::string::npos) {
                    if (in_.size() > 65536 && in_.find("<message") == std::string::npos) {
                        in_.clear();
                    }
                    return;
                }
                auto b = in_.rfind("<body>", e);
                if (b != std::string::npos) {
                    auto be = in_.find("</body>", b);
                    body_(in_.substr(b + 6, be - b - 6));
                }
                in_.erase(0, e + 10);
            }
        }
    }

    tcp::socket sock_;
    std::array<char, 16384> buf_;
    std::string in_, domain_, jid_;
    std::deque<std::shared_ptr<std::string>> out_;
    bool writing_ = false, closed_ = false;
    int state_ = 0;
    ReadyFn ready_;
    BodyFn body_;
    ErrorFn err_;
};

// ------------------------------------------------------------------------------------------ stats

struct Histogram {
    std::vector<int64_t> ns;
    void Add(int64_t v) { ns.push_back(v); }
    double PctMs(double p) {
        if (ns.empty()) {
            return 0;
        }
        std::sort(ns.begin(), ns.end());
        size_t i = static_cast<size_t>(p * static_cast<double>(ns.size() - 1));
        return static_cast<double>(ns[i]) / 1e6;
    }
};

long RssKiB(int pid) {
    if (pid <= 0) {
        return -1;
    }
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmRSS:", 0) == 0) {
            return std::strtol(line.c_str() + 6, nullptr, 10);
        }
    }
    return -1;
}

double CpuSeconds(int pid) {
    if (pid <= 0) {
        return -1;
    }
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto close = s.rfind(')');
    if (close == std::string::npos) {
        return -1;
    }
    std::istringstream in(s.substr(close + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
        if (i == 14) {
            utime = std::stol(field);
        } else if (i == 15) {
            stime = std::stol(field);
        }
    }
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Report {
    std::vector<std::pair<std::string, std::string>> rows;
    bool ok = true;
    std::vector<std::string> problems;
    void Add(const std::string& k, double v, const char* fmt = "%.0f") {
        char buf[64];
        std::snprintf(buf, sizeof buf, fmt, v);
        rows.emplace_back(k, buf);
    }
    void Fail(const std::string& why) {
        ok = false;
        if (problems.size() < 20) {
            problems.push_back(why);
        }
    }
    // p50, p99 and p999 of a latency histogram, as "<name> p50 ms" and so on.
    void AddLatency(const std::string& name, Histogram& h) {
        Add(name + " p50 ms", h.PctMs(0.5), "%.3f");
        Add(name + " p99 ms", h.PctMs(0.99), "%.3f");
        Add(name + " p999 ms", h.PctMs(0.999), "%.3f");
    }
    // The server's CPU time since `cpu0` and its RSS now, when its pid is known.
    void AddServerUsage(int pid, double cpu0) {
        if (pid > 0) {
            Add("server cpu s", CpuSeconds(pid) - cpu0, "%.2f");
            Add("server rss KiB", static_cast<double>(RssKiB(pid)));
        }
    }
    int Print(const std::string& scenario) {
        std::printf("flare-bench %s\n", scenario.c_str());
        for (auto& [k, v] : rows) {
            std::printf("  %-28s %14s\n", k.c_str(), v.c_str());
        }
        std::printf("  %-28s %14s\n", "verified", ok ? "yes" : "NO");
        for (auto& p : problems) {
            std::printf("  ! %s\n", p.c_str());
        }
        std::printf("{\"scenario\":\"%s\",\"ok\":%s", scenario.c_str(), ok ? "true" : "false");
        for (auto& [k, v] : rows) {
            std::string key = k;
            std::replace(key.begin(), key.end(), ' ', '_');
            std::replace(key.begin(), key.end(), '/', '_');
            std::printf(",\"%s\":%s", key.c_str(), v.c_str());
        }
        std::printf("}\n");
        return ok ? 0 : 1;
    }
};

// The harness: one io_context on this thread, connections spread over source addresses.
class Harness {
public:
    explicit Harness(const Options& o) : o_(o), deadline_timer_(io_) {}

    std::shared_ptr<Conn> Connect(int index, const std::string& user, const std::string& device,
                                  Conn::FrameFn on_frame) {
        auto c = std::make_shared<Conn>(io_);
        const std::string src = "127.0.0." + std::to_string(1 + index % std::max(1, o_.sources));
        c->Open(o_, src, user, device, std::move(on_frame), [this, user](const std::string& e) {
            if (!stopping_) {
                ++errors_;
                if (errors_ <= 5) {
                    std::fprintf(stderr, "flare-bench: %s: %s\n", user.c_str(), e.c_str());
                }
            }
        });
        return c;
    }

    // Runs until `done()` or the timeout; returns false on timeout.
    bool RunUntil(const std::function<bool()>& done, double timeout_s) {
        const auto end = SteadyClock::now() + std::chrono::duration<double>(timeout_s);
        while (!done()) {
            if (SteadyClock::now() >= end) {
                return false;
            }
            io_.run_for(std::chrono::milliseconds(5));
            if (io_.stopped()) {
                io_.restart();
            }
        }
        return true;
    }

    asio::io_context& io() { return io_; }
    int errors() const { return errors_; }
    void Stopping() { stopping_ = true; }
    const Options& o() const { return o_; }

private:
    const Options& o_;
    asio::io_context io_;
    asio::steady_timer deadline_timer_;
    int errors_ = 0;
    bool stopping_ = false;
};

// How many sends are due `rate` per second after `start`, capped at `max`.
int64_t Due(SteadyClock::time_point start, int64_t rate, int64_t max) {
    const double elapsed = std::chrono::duration<double>(SteadyClock::now() - start).count();
    return std::min<int64_t>(static_cast<int64_t>(elapsed * static_cast<double>(rate)), max);
}

pb::ClientFrame SendFrame(const std::string& conv, const std::string& cid, const std::string& text) {
    pb::ClientFrame f;
    f.set_request_id(cid);
    auto* s = f.mutable_send();
    s->set_conversation_id(conv);
    s->set_client_msg_id(cid);
    s->set_text(text);
    return f;
}

// Connects `users` (one connection each) and waits for every auth response.
std::vector<std::shared_ptr<Conn>> ConnectAll(Harness& h, const std::vector<std::string>& users,
                                              std::function<void(size_t, const pb::ServerFrame&)> on_frame,
                                              size_t& authed, Report& r) {
    std::vector<std::shared_ptr<Conn>> conns;
    conns.reserve(users.size());
    for (size_t i = 0; i < users.size(); ++i) {
        conns.push_back(h.Connect(static_cast<int>(i), users[i], "d", [&authed, i, on_frame](const pb::ServerFrame& f) {
            if (f.has_auth()) {
                ++authed;
                return;
            }
            on_frame(i, f);
        }));
        if (i % 500 == 499) {  // let the handshakes drain: somaxconn is 4096
            h.RunUntil([&] { return authed + 200 >= i; }, 10);
        }
    }
    if (!h.RunUntil([&] { return authed == users.size(); }, 30)) {
        r.Fail("only " + std::to_string(authed) + " of " + std::to_string(users.size()) + " connections authenticated");
    }
    return conns;
}

// ------------------------------------------------------------------------------------- scenarios

int Direct(const Options& o) {
    Harness h(o);
    Report r;
    const int P = o.pairs;
    std::vector<std::string> users;
    for (int i = 0; i < P; ++i) {
        users.push_back("b" + o.run_id + "a" + std::to_string(i));
        users.push_back("b" + o.run_id + "b" + std::to_string(i));
    }
    struct Pair {
        std::string conv;
        int64_t sent = 0, acked = 0, delivered = 0, inflight = 0, next_cid = 0;
        uint64_t first_seq = 0, last_seq = 0;
        std::map<std::string, int64_t> send_ns;  // request id -> send time
    };
    std::vector<Pair> pairs(P);
    for (int i = 0; i < P; ++i) {
        pairs[i].conv = flare::DirectConversationId(users[2 * i], users[2 * i + 1]);
    }
    Histogram ack_lat, deliver_lat;
    bool sending = true;
    int64_t total_sent = 0;
    std::vector<std::shared_ptr<Conn>>* conns_ptr = nullptr;
    std::function<void(int)> send_one = [&](int i) {
        Pair& p = pairs[i];
        const std::string cid = std::to_string(++p.next_cid);
        p.send_ns[cid] = NowNs();
        std::string text = std::to_string(NowNs());
        if (o.text_bytes > text.size() + 1) {
            text += ' ' + std::string(o.text_bytes - text.size() - 1, 'a');
        }
        (*conns_ptr)[2 * i]->Send(SendFrame(p.conv, cid, text));
        ++p.sent;
        ++p.inflight;
        ++total_sent;
    };
    size_t authed = 0;
    auto conns = ConnectAll(
        h, users,
        [&](size_t idx, const pb::ServerFrame& f) {
            const int i = static_cast<int>(idx / 2);
            Pair& p = pairs[i];
            if (idx % 2 == 0) {  // sender: acks
                if (f.has_send()) {
                    auto it = p.send_ns.find(f.request_id());
                    if (it != p.send_ns.end()) {
                        ack_lat.Add(NowNs() - it->second);
                        p.send_ns.erase(it);
                    }
                    ++p.acked;
                    --p.inflight;
                    if (o.rate == 0 && sending && total_sent < o.max_messages) {
                        send_one(i);
                    }
                } else if (f.has_error()) {
                    r.Fail("send error: " + f.error().reason());
                    --p.inflight;
                }
                return;
            }
            if (!f.has_message()) {
                return;
            }
            const auto& m = f.message().message();
            if (m.conversation_id() != p.conv) {
                return;
            }
            if (p.last_seq != 0 && m.seq() != p.last_seq + 1) {
                r.Fail(p.conv + ": seq " + std::to_string(m.seq()) + " after " + std::to_string(p.last_seq));
            }
            if (p.first_seq == 0) {
                p.first_seq = m.seq();
            }
            p.last_seq = m.seq();
            ++p.delivered;
            deliver_lat.Add(NowNs() - std::strtoll(m.text().c_str(), nullptr, 10));
        },
        authed, r);
    conns_ptr = &conns;
    if (!r.ok) {
        return r.Print("direct");
    }
    // Warm-up, not counted: one message per pair creates the conversations.
    sending = false;
    for (int i = 0; i < P; ++i) {
        send_one(i);
    }
    h.RunUntil(
        [&] {
            return std::all_of(pairs.begin(), pairs.end(), [](const Pair& p) { return p.inflight == 0 && p.delivered == 1; });
        },
        10);
    for (auto& p : pairs) {
        p.sent = p.acked = p.delivered = 0;
        p.first_seq = 0;  // last_seq stays: the order check continues across the warm-up
    }
    total_sent = 0;
    ack_lat.ns.clear();
    deliver_lat.ns.clear();
    sending = true;
    const auto start = SteadyClock::now();
    const double cpu0 = CpuSeconds(o.server_pid);
    if (o.rate == 0) {
        for (int i = 0; i < P; ++i) {
            for (int k = 0; k < o.window; ++k) {
                send_one(i);
            }
        }
        h.RunUntil([&] { return total_sent >= o.max_messages; }, o.duration_s);
    } else {
        // Fixed rate: every millisecond, send what the schedule says is due, round-robin over pairs.
        int next = 0;
        int64_t due_sent = 0;
        h.RunUntil(
            [&] {
                const int64_t due = Due(start, o.rate, o.max_messages);
                while (due_sent < due) {
                    send_one(next);
                    next = (next + 1) % P;
                    ++due_sent;
                }
                return due_sent >= o.max_messages;
            },
            o.duration_s);
    }
    sending = false;
    const double send_s = std::chrono::duration<double>(SteadyClock::now() - start).count();
    auto all_done = [&] {
        for (auto& p : pairs) {
            if (p.inflight > 0 || p.delivered < p.acked) {
                return false;
            }
        }
        return true;
    };
    h.RunUntil(all_done, 10);
    const double total_s = std::chrono::duration<double>(SteadyClock::now() - start).count();
    int64_t sent = 0, acked = 0, delivered = 0;
    for (auto& p : pairs) {
        sent += p.sent;
        acked += p.acked;
        delivered += p.delivered;
        if (p.delivered != p.acked) {
            r.Fail(p.conv + ": " + std::to_string(p.acked) + " acknowledged but " + std::to_string(p.delivered) +
                   " delivered");
        }
        if (p.acked > 0 && p.last_seq - p.first_seq + 1 != static_cast<uint64_t>(p.delivered)) {
            r.Fail(p.conv + ": delivered seqs are not dense");
        }
    }
    if (acked != sent) {
        r.Fail(std::to_string(sent - acked) + " sends were never acknowledged");
    }
    h.Stopping();
    r.Add("pairs", P);
    r.Add("sent", static_cast<double>(sent));
    r.Add("acknowledged", static_cast<double>(acked));
    r.Add("delivered", static_cast<double>(delivered));
    r.Add("send seconds", send_s, "%.2f");
    r.Add("acked per s", static_cast<double>(acked) / total_s);
    r.Add("delivered per s", static_cast<double>(delivered) / total_s);
    r.AddLatency("ack", ack_lat);
    r.AddLatency("deliver", deliver_lat);
    r.AddServerUsage(o.server_pid, cpu0);
    if (h.errors() > 0) {
        r.Fail(std::to_string(h.errors()) + " connection errors");
    }
    for (auto& c : conns) {
        c->Close();
    }
    return r.Print("direct");
}

int Room(const Options& o) {
    Harness h(o);
    Report r;
    const std::string room = "bench" + o.run_id;
    const std::string conv = flare::RoomConversationId(room);
    std::vector<std::string> users;
    for (int i = 0; i < o.members; ++i) {
        users.push_back("r" + o.run_id + "m" + std::to_string(i));
    }
    struct Member {
        int64_t got = 0;
        uint64_t last = 0;
    };
    std::vector<Member> members(o.members);
    size_t joined = 0;
    Histogram lat;
    int64_t acked = 0;
    uint64_t first_seq = 0;
    size_t authed = 0;
    auto conns = ConnectAll(
        h, users,
        [&](size_t i, const pb::ServerFrame& f) {
            if (f.has_join_room()) {
                ++joined;
            } else if (f.has_send()) {
                ++acked;
                if (first_seq == 0) {
                    first_seq = f.send().seq();
                }
            } else if (f.has_message() && f.message().message().conversation_id() == conv) {
                const auto& m = f.message().message();
                Member& mem = members[i];
                if (mem.last != 0 && m.seq() != mem.last + 1) {
                    r.Fail(users[i] + ": seq " + std::to_string(m.seq()) + " after " + std::to_string(mem.last));
                }
                mem.last = m.seq();
                ++mem.got;
                lat.Add(NowNs() - std::strtoll(m.text().c_str(), nullptr, 10));
            } else if (f.has_error()) {
                r.Fail("error: " + f.error().reason());
            }
        },
        authed, r);
    for (auto& c : conns) {
        pb::ClientFrame j;
        j.set_request_id("join");
        j.mutable_join_room()->set_room(room);
        c->Send(j);
    }
    if (!h.RunUntil([&] { return joined == users.size(); }, 30)) {
        r.Fail("only " + std::to_string(joined) + " members joined");
        return r.Print("room");
    }
    // Member 0 publishes; the others receive (the publisher's own device gets the ack instead).
    const int64_t rate = o.rate > 0 ? o.rate : 100;
    const auto start = SteadyClock::now();
    const double cpu0 = CpuSeconds(o.server_pid);
    int64_t sent = 0;
    h.RunUntil(
        [&] {
            const int64_t due = Due(start, rate, o.max_messages);
            while (sent < due) {
                ++sent;
                conns[0]->Send(SendFrame(conv, "p" + std::to_string(sent), std::to_string(NowNs())));
            }
            return sent >= o.max_messages;
        },
        o.duration_s);
    auto done = [&] {
        if (acked < sent) {
            return false;
        }
        for (int i = 1; i < o.members; ++i) {
            if (members[i].got < acked) {
                return false;
            }
        }
        return true;
    };
    h.RunUntil(done, 15);
    const double total_s = std::chrono::duration<double>(SteadyClock::now() - start).count();
    int64_t deliveries = 0;
    for (int i = 1; i < o.members; ++i) {
        deliveries += members[i].got;
        if (members[i].got != acked) {
            r.Fail(users[i] + " got " + std::to_string(members[i].got) + " of " + std::to_string(acked));
        }
    }
    if (acked != sent) {
        r.Fail(std::to_string(sent - acked) + " publishes were never acknowledged");
    }
    h.Stopping();
    r.Add("members", o.members);
    r.Add("published", static_cast<double>(sent));
    r.Add("deliveries", static_cast<double>(deliveries));
    r.Add("deliveries per s", static_cast<double>(deliveries) / total_s);
    r.AddLatency("deliver", lat);
    r.AddServerUsage(o.server_pid, cpu0);
    for (auto& c : conns) {
        c->Close();
    }
    return r.Print("room");
}

int Idle(const Options& o) {
    Harness h(o);
    Report r;
    const long rss0 = RssKiB(o.server_pid);
    const double cpu0 = CpuSeconds(o.server_pid);
    std::vector<std::string> users;
    for (int i = 0; i < o.connections; ++i) {
        users.push_back("i" + o.run_id + "u" + std::to_string(i));
    }
    int64_t pongs = 0;
    size_t authed = 0;
    const auto t0 = SteadyClock::now();
    auto conns = ConnectAll(
        h, users, [&](size_t, const pb::ServerFrame& f) { pongs += f.has_pong() ? 1 : 0; }, authed, r);
    const double connect_s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    // Hold them, pinging each once per 20 s (well inside the idle timeout).
    const auto start = SteadyClock::now();
    size_t next = 0;
    int64_t pings = 0;
    const double per_conn_interval = 20.0 / std::max<size_t>(1, conns.size());
    h.RunUntil(
        [&] {
            const double elapsed = std::chrono::duration<double>(SteadyClock::now() - start).count();
            while (static_cast<double>(pings) * per_conn_interval < elapsed && !conns.empty()) {
                pb::ClientFrame p;
                p.set_request_id("p");
                p.mutable_ping();
                conns[next]->Send(p);
                next = (next + 1) % conns.size();
                ++pings;
            }
            return false;
        },
        o.duration_s);
    h.RunUntil([&] { return pongs >= pings; }, 5);
    const long rss1 = RssKiB(o.server_pid);
    const double cpu1 = CpuSeconds(o.server_pid);
    if (pongs < pings) {
        r.Fail(std::to_string(pings - pongs) + " pings unanswered");
    }
    if (h.errors() > 0) {
        r.Fail(std::to_string(h.errors()) + " connection errors");
    }
    h.Stopping();
    r.Add("connections", static_cast<double>(authed));
    r.Add("connect seconds", connect_s, "%.2f");
    r.Add("pings answered", static_cast<double>(pongs));
    if (o.server_pid > 0) {
        r.Add("server rss before KiB", static_cast<double>(rss0));
        r.Add("server rss after KiB", static_cast<double>(rss1));
        r.Add("rss per connection KiB", authed ? static_cast<double>(rss1 - rss0) / static_cast<double>(authed) : 0,
              "%.2f");
        r.Add("server cpu s while idle", cpu1 - cpu0, "%.2f");
    }
    for (auto& c : conns) {
        c->Close();
    }
    return r.Print("idle");
}

// Users connect, catch up, acknowledge and disconnect over and over while a sender writes to each of
// them: every reconnect must deliver exactly what was missed, in order.
int Churn(const Options& o) {
    Harness h(o);
    Report r;
    const std::string sender = "c" + o.run_id + "sender";
    struct User {
        std::string id, conv;
        std::shared_ptr<Conn> conn;
        uint64_t cursor = 0;  // highest seq seen, across connections
        int64_t sent_to = 0, acked_to = 0;
        bool online = false, syncing = false;
        int cycles = 0;
    };
    std::vector<User> users(o.users);
    for (int i = 0; i < o.users; ++i) {
        users[i].id = "c" + o.run_id + "u" + std::to_string(i);
        users[i].conv = flare::DirectConversationId(sender, users[i].id);
    }
    int64_t reconnects = 0, caught_up = 0, acked_total = 0, sent_total = 0;
    std::function<void(int)> connect_user;
    auto on_user_frame = [&](int i, const pb::ServerFrame& f) {
        User& u = users[i];
        auto take = [&](const pb::Message& m) {
            if (m.conversation_id() != u.conv || m.seq() <= u.cursor) {
                return;  // a live push the sync already brought, or older
            }
            if (m.seq() != u.cursor + 1) {
                r.Fail(u.id + ": gap: seq " + std::to_string(m.seq()) + " after " + std::to_string(u.cursor));
            }
            u.cursor = m.seq();
        };
        if (f.has_auth()) {
            u.online = true;
            u.syncing = true;
            pb::ClientFrame s;
            s.set_request_id("sync");
            s.mutable_sync_messages()->set_conversation_id(u.conv);
            s.mutable_sync_messages()->set_after_seq(u.cursor);
            s.mutable_sync_messages()->set_limit(500);
            u.conn->Send(s);
        } else if (f.has_sync_messages()) {
            for (const auto& m : f.sync_messages().messages()) {
                take(m);
            }
            if (f.sync_messages().has_more()) {
                pb::ClientFrame s;
                s.set_request_id("sync");
                s.mutable_sync_messages()->set_conversation_id(u.conv);
                s.mutable_sync_messages()->set_after_seq(u.cursor);
                s.mutable_sync_messages()->set_limit(500);
                u.conn->Send(s);
                return;
            }
            u.syncing = false;
            ++caught_up;
            if (u.cursor == 0) {  // nothing sent to this user yet: nothing to acknowledge
                u.conn->Close();
                u.conn.reset();
                u.online = false;
                ++u.cycles;
                ++reconnects;
                return;
            }
            pb::ClientFrame a;
            a.set_request_id("ack");
            a.mutable_ack()->set_conversation_id(u.conv);
            a.mutable_ack()->set_seq(u.cursor);
            u.conn->Send(a);
        } else if (f.has_message()) {
            if (!u.syncing) {
                take(f.message().message());
            }
        } else if (f.has_ack()) {
            // Done with this cycle: disconnect, come back soon.
            u.conn->Close();
            u.conn.reset();
            u.online = false;
            ++u.cycles;
            ++reconnects;
        } else if (f.has_error() && f.error().reason() != "unknown_conversation") {
            r.Fail(u.id + ": error " + f.error().reason());
        }
    };
    connect_user = [&](int i) {
        User& u = users[i];
        u.conn = std::make_shared<Conn>(h.io());
        const std::string src = "127.0.0." + std::to_string(1 + i % std::max(1, o.sources));
        u.conn->Open(o, src, u.id, "d", [&, i](const pb::ServerFrame& f) { on_user_frame(i, f); },
                     [&, i](const std::string& e) {
                         if (users[i].conn) {
                             r.Fail(users[i].id + ": " + e);
                         }
                     });
    };
    // The sender.
    int64_t sender_acked = 0;
    size_t sender_authed = 0;
    auto s = h.Connect(0, sender, "d", [&](const pb::ServerFrame& f) {
        if (f.has_auth()) {
            ++sender_authed;
        } else if (f.has_send()) {
            ++sender_acked;
            ++acked_total;
            const int i = std::atoi(f.request_id().c_str());
            ++users[i].acked_to;
        } else if (f.has_error()) {
            r.Fail("sender error: " + f.error().reason());
        }
    });
    h.RunUntil([&] { return sender_authed == 1; }, 10);
    const auto start = SteadyClock::now();
    const int64_t rate = o.rate > 0 ? o.rate : 1000;
    int next = 0;
    h.RunUntil(
        [&] {
            const int64_t due = Due(start, rate, o.max_messages);
            while (sent_total < due) {
                User& u = users[next];
                ++u.sent_to;
                ++sent_total;
                s->Send(SendFrame(u.conv, std::to_string(next) + "-" + std::to_string(u.sent_to),
                                  std::to_string(u.sent_to)));
                next = (next + 1) % o.users;
            }
            for (int i = 0; i < o.users; ++i) {
                if (!users[i].conn) {
                    connect_user(i);
                }
            }
            return sent_total >= o.max_messages;
        },
        o.duration_s);
    // Final round: everyone connects once more and must hold exactly what was sent to them.
    h.RunUntil([&] { return sender_acked == sent_total; }, 10);
    auto all_current = [&] {
        for (int i = 0; i < o.users; ++i) {
            if (!users[i].conn) {
                connect_user(i);
            }
            if (users[i].cursor < static_cast<uint64_t>(users[i].acked_to)) {
                return false;
            }
        }
        return true;
    };
    h.RunUntil(all_current, 20);
    const double total_s = std::chrono::duration<double>(SteadyClock::now() - start).count();
    for (auto& u : users) {
        if (u.cursor != static_cast<uint64_t>(u.acked_to)) {
            r.Fail(u.id + ": holds up to seq " + std::to_string(u.cursor) + " but " + std::to_string(u.acked_to) +
                   " were acknowledged to the sender");
        }
    }
    h.Stopping();
    r.Add("users", o.users);
    r.Add("messages", static_cast<double>(sent_total));
    r.Add("reconnects", static_cast<double>(reconnects));
    r.Add("reconnects per s", static_cast<double>(reconnects) / total_s);
    r.Add("catch-ups", static_cast<double>(caught_up));
    for (auto& u : users) {
        if (u.conn) {
            u.conn->Close();
        }
    }
    s->Close();
    return r.Print("churn");
}

// The direct and idle workloads over XMPP. XMPP has no per-message acknowledgement, so the window of
// unanswered messages is counted against deliveries, and only send->deliver latency is reported.
int DirectXmpp(const Options& o) {
    Harness h(o);
    Report r;
    const int P = o.pairs;
    struct Pair {
        std::shared_ptr<XmppConn> a, b;
        std::string b_jid;
        int64_t sent = 0, delivered = 0, last_index = 0;
    };
    std::vector<Pair> pairs(P);
    Histogram lat;
    int ready = 0, errors = 0;
    bool sending = false;
    int64_t total_sent = 0;
    std::function<void(int)> send_one = [&](int i) {
        Pair& p = pairs[i];
        ++p.sent;
        ++total_sent;
        p.a->SendMessage(p.b_jid, std::to_string(p.sent), std::to_string(p.sent) + ":" + std::to_string(NowNs()));
    };
    for (int i = 0; i < P; ++i) {
        auto on_err = [&errors, &h](const std::string& e) {
            if (++errors <= 5) {
                std::fprintf(stderr, "flare-bench xmpp: %s\n", e.c_str());
            }
        };
        pairs[i].a = std::make_shared<XmppConn>(h.io());
        pairs[i].b = std::make_shared<XmppConn>(h.io());
        pairs[i].a->Open(o, "127.0.0." + std::to_string(1 + (2 * i) % o.sources), [&](const std::string&) { ++ready; },
                         [](const std::string&) {}, on_err);
        pairs[i].b->Open(
            o, "127.0.0." + std::to_string(1 + (2 * i + 1) % o.sources),
            [&, i](const std::string& jid) {
                pairs[i].b_jid = jid;
                ++ready;
            },
            [&, i](const std::string& body) {
                Pair& p = pairs[i];
                const int64_t index = std::strtoll(body.c_str(), nullptr, 10);
                if (index != p.last_index + 1) {
                    r.Fail("xmpp pair " + std::to_string(i) + ": message " + std::to_string(index) + " after " +
                           std::to_string(p.last_index));
                }
                p.last_index = index;
                ++p.delivered;
                auto colon = body.find(':');
                lat.Add(NowNs() - std::strtoll(body.c_str() + colon + 1, nullptr, 10));
                if (sending && o.rate == 0 && total_sent < o.max_messages) {
                    send_one(i);
                }
            },
            on_err);
    }
    if (!h.RunUntil([&] { return ready == 2 * P; }, 30)) {
        r.Fail("only " + std::to_string(ready) + " of " + std::to_string(2 * P) + " XMPP sessions ready");
        return r.Print("direct-xmpp");
    }
    sending = true;
    const auto start = SteadyClock::now();
    const double cpu0 = CpuSeconds(o.server_pid);
    for (int i = 0; i < P; ++i) {
        for (int k = 0; k < o.window; ++k) {
            send_one(i);
        }
    }
    h.RunUntil([&] { return total_sent >= o.max_messages; }, o.duration_s);
    sending = false;
    h.RunUntil(
        [&] { return std::all_of(pairs.begin(), pairs.end(), [](const Pair& p) { return p.delivered == p.sent; }); },
        10);
    const double total_s = std::chrono::duration<double>(SteadyClock::now() - start).count();
    int64_t delivered = 0;
    for (auto& p : pairs) {
        delivered += p.delivered;
        if (p.delivered != p.sent) {
            r.Fail("xmpp: " + std::to_string(p.sent - p.delivered) + " messages not delivered");
        }
    }
    h.Stopping();
    r.Add("pairs", P);
    r.Add("sent", static_cast<double>(total_sent));
    r.Add("delivered", static_cast<double>(delivered));
    r.Add("delivered per s", static_cast<double>(delivered) / total_s);
    r.AddLatency("deliver", lat);
    r.AddServerUsage(o.server_pid, cpu0);
    if (errors > 0) {
        r.Fail(std::to_string(errors) + " connection errors");
    }
    for (auto& p : pairs) {
        p.a->Close();
        p.b->Close();
    }
    return r.Print("direct-xmpp");
}

int IdleXmpp(const Options& o) {
    Harness h(o);
    Report r;
    const long rss0 = RssKiB(o.server_pid);
    std::vector<std::shared_ptr<XmppConn>> conns;
    int ready = 0, errors = 0;
    const auto t0 = SteadyClock::now();
    for (int i = 0; i < o.connections; ++i) {
        conns.push_back(std::make_shared<XmppConn>(h.io()));
        conns.back()->Open(o, "127.0.0." + std::to_string(1 + i % o.sources), [&](const std::string&) { ++ready; },
                           [](const std::string&) {}, [&](const std::string&) { ++errors; });
        if (i % 500 == 499) {
            h.RunUntil([&] { return ready + 200 >= i; }, 20);
        }
    }
    // Wait for the stragglers while they keep coming; a peer that leaves a few sessions hanging is
    // measured on the sessions it did open (at least 95 %).
    for (int last = -1; ready < o.connections && ready != last;) {
        last = ready;
        h.RunUntil([&] { return ready == o.connections; }, 3);
    }
    if (ready < o.connections * 95 / 100) {
        r.Fail("only " + std::to_string(ready) + " of " + std::to_string(o.connections) + " XMPP sessions ready");
    }
    const double connect_s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    h.RunUntil([] { return false; }, o.duration_s);
    const long rss1 = RssKiB(o.server_pid);
    h.Stopping();
    r.Add("connections", ready);
    r.Add("connections asked", o.connections);
    r.Add("connect seconds", connect_s, "%.2f");
    if (o.server_pid > 0) {
        r.Add("server rss before KiB", static_cast<double>(rss0));
        r.Add("server rss after KiB", static_cast<double>(rss1));
        r.Add("rss per connection KiB", ready ? static_cast<double>(rss1 - rss0) / ready : 0, "%.2f");
    }
    if (errors > 0) {
        r.Fail(std::to_string(errors) + " connection errors");
    }
    for (auto& c : conns) {
        c->Close();
    }
    return r.Print("idle-xmpp");
}

// ------------------------------------------------------------------------------- webhook receiver

// A pre_send webhook receiver to measure the hook path against: answers every POST with allow,
// keeping connections open as long as the caller does, and counts requests and connections.
struct WebhookStats {
    int64_t requests = 0;
    int64_t connections = 0;
    int64_t unsigned_requests = 0;
};

asio::awaitable<void> ServeWebhook(tcp::socket socket, WebhookStats* stats) {
    constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
        http::request<http::string_body> req;
        auto [ec, n] = co_await http::async_read(stream, buffer, req, kTuple);
        if (ec) {
            co_return;
        }
        ++stats->requests;
        if (req.method() != http::verb::post || req["X-Flare-Signature"].empty()) {
            ++stats->unsigned_requests;
        }
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.set(http::field::content_type, "application/json");
        res.keep_alive(req.keep_alive());
        res.body() = R"({"action":"allow"})";
        res.prepare_payload();
        auto [wec, wn] = co_await http::async_write(stream, res, kTuple);
        if (wec || !res.keep_alive()) {
            co_return;
        }
    }
}

asio::awaitable<void> AcceptWebhooks(tcp::acceptor* acceptor, WebhookStats* stats) {
    for (;;) {
        auto [ec, socket] = co_await acceptor->async_accept(asio::as_tuple(asio::use_awaitable));
        if (ec) {
            co_return;
        }
        ++stats->connections;
        asio::co_spawn(acceptor->get_executor(), ServeWebhook(std::move(socket), stats), asio::detached);
    }
}

int Webhook(const Options& o) {
    asio::io_context io;
    tcp::acceptor acceptor(io);
    const tcp::endpoint ep(asio::ip::make_address(o.host), o.port);
    boost::system::error_code ec;
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        std::cerr << "flare-bench: cannot listen on " << o.host << ":" << o.port << ": " << ec.message() << "\n";
        return 2;
    }
    std::cerr << "flare-bench: webhook receiver on http://" << o.host << ":" << acceptor.local_endpoint().port()
              << "/ for " << o.duration_s << " s" << std::endl;
    WebhookStats stats;
    asio::co_spawn(io, AcceptWebhooks(&acceptor, &stats), asio::detached);
    asio::signal_set stop_signals(io, SIGINT, SIGTERM);  // stop early and still report
    stop_signals.async_wait([&io](const boost::system::error_code&, int) { io.stop(); });
    const auto t0 = SteadyClock::now();
    io.run_for(std::chrono::milliseconds(static_cast<int64_t>(o.duration_s * 1000)));
    const double elapsed = std::chrono::duration<double>(SteadyClock::now() - t0).count();
    Report r;
    r.Add("requests", static_cast<double>(stats.requests));
    r.Add("connections accepted", static_cast<double>(stats.connections));
    r.Add("requests/s", static_cast<double>(stats.requests) / elapsed);
    if (stats.unsigned_requests > 0) {
        r.Fail(std::to_string(stats.unsigned_requests) + " requests without X-Flare-Signature");
    }
    return r.Print("webhook");
}

constexpr const char* kUsage = R"(usage: flare-bench SCENARIO [options]
scenarios:
  idle    --connections N --duration S        N authenticated connections pinging; server RSS per connection
  direct  --pairs P [--rate R | --window W] --duration S --max-messages N [--text-bytes B]
                                              1:1 messages; ack and deliver latency percentiles
  room    --members M --rate R --duration S   one chatroom, one publisher; deliveries per second
  churn   --users U --rate R --duration S     connect, catch up, ack, disconnect, over and over
  webhook --port P --duration S                a pre_send webhook receiver answering allow (keep-alive), for
                                              measuring the hook path; counts requests and connections
                                              (SIGINT/SIGTERM end it early, with the report)
  --protocol xmpp (direct, idle): a minimal XMPP client (SASL ANONYMOUS), for ejabberd side by side
options: --host 127.0.0.1 --port 60051 --secret insecure-secret (TOKEN_SECRET) --sources 4
         (source addresses 127.0.0.1..N) --server-pid PID (for RSS and CPU)
         --batch 0 (do not ask the server to batch queued frames into one message)
Targets loopback only. Exits 1 when what was delivered is wrong (missing, duplicated, out of order).
)";

}  // namespace

int main(int argc, char** argv) {
    Options o;
    if (const char* s = std::getenv("TOKEN_SECRET")) {
        o.secret = s;
    }
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() || args[0] == "-h" || args[0] == "--help") {
        std::cout << kUsage;
        return args.empty() ? 2 : 0;
    }
    o.scenario = args[0];
    for (size_t i = 1; i < args.size(); ++i) {
        if (i + 1 >= args.size()) {
            std::cerr << "flare-bench: " << args[i] << " needs a value\n" << kUsage;
            return 2;
        }
        const std::string& k = args[i];
        const std::string& v = args[++i];
        auto num = [&]() { return std::strtoll(v.c_str(), nullptr, 10); };
        if (k == "--host") o.host = v;
        else if (k == "--port") o.port = static_cast<uint16_t>(num());
        else if (k == "--secret") o.secret = v;
        else if (k == "--sources") o.sources = static_cast<int>(num());
        else if (k == "--connections") o.connections = static_cast<int>(num());
        else if (k == "--pairs") o.pairs = static_cast<int>(num());
        else if (k == "--members") o.members = static_cast<int>(num());
        else if (k == "--users") o.users = static_cast<int>(num());
        else if (k == "--rate") o.rate = num();
        else if (k == "--window") o.window = static_cast<int>(num());
        else if (k == "--duration") o.duration_s = std::strtod(v.c_str(), nullptr);
        else if (k == "--max-messages") o.max_messages = num();
        else if (k == "--text-bytes") o.text_bytes = static_cast<size_t>(num());
        else if (k == "--server-pid") o.server_pid = static_cast<int>(num());
        else if (k == "--protocol") o.protocol = v;
        else if (k == "--batch") o.batch = v != "0";
        else if (k == "--xmpp-domain") o.xmpp_domain = v;
        else {
            std::cerr << "flare-bench: unknown option " << k << "\n" << kUsage;
            return 2;
        }
    }
    auto addr = boost::asio::ip::make_address(o.host);
    if (!addr.is_loopback()) {
        std::cerr << "flare-bench: targets loopback addresses only, not " << o.host << "\n";
        return 2;
    }
    if (o.duration_s <= 0 || o.duration_s > 600 || o.connections < 1 || o.connections > 19000 || o.pairs < 1 ||
        o.pairs > 5000 || o.members < 2 || o.members > 19000 || o.users < 1 || o.users > 5000) {
        std::cerr << "flare-bench: counts or duration out of bounds (duration 0..600 s, at most 19000 connections)\n";
        return 2;
    }
    o.run_id = flare::RandomHexId(3);
    if (o.protocol == "xmpp") {
        if (o.scenario == "direct") return DirectXmpp(o);
        if (o.scenario == "idle") return IdleXmpp(o);
        std::cerr << "flare-bench: --protocol xmpp supports the direct and idle scenarios\n";
        return 2;
    }
    if (o.protocol != "flare") {
        std::cerr << "flare-bench: --protocol is flare or xmpp\n";
        return 2;
    }
    if (o.scenario == "direct") return Direct(o);
    if (o.scenario == "webhook") return Webhook(o);
    if (o.scenario == "room") return Room(o);
    if (o.scenario == "idle") return Idle(o);
    if (o.scenario == "churn") return Churn(o);
    std::cerr << "flare-bench: unknown scenario '" << o.scenario << "'\n" << kUsage;
    return 2;
}
