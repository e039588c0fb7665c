// A thin RAII layer over libpq for the PostgreSQL adapter's .cpp files (never include it from a port
// or domain header): one connection, text-format parameters and results, errors as PgError carrying
// the SQLSTATE, and the mapping of connection loss to kUnavailable.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace flare::pg {

struct PgError : std::runtime_error {
    PgError(const std::string& what, std::string sqlstate, bool connection_lost)
        : std::runtime_error(what), sqlstate(std::move(sqlstate)), connection_lost(connection_lost) {}
    std::string sqlstate;  // e.g. "40P01" deadlock; empty when the server gave none
    bool connection_lost;
};

class Rows {
public:
    explicit Rows(PGresult* r) : r_(r, &PQclear) {}
    int size() const { return PQntuples(r_.get()); }
    bool IsNull(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
    std::string Text(int row, int col) const {
        return std::string(PQgetvalue(r_.get(), row, col), static_cast<size_t>(PQgetlength(r_.get(), row, col)));
    }
    int64_t Int(int row, int col) const { return std::stoll(PQgetvalue(r_.get(), row, col)); }

private:
    std::unique_ptr<PGresult, decltype(&PQclear)> r_;
};

// Parameters are passed as text; std::nullopt is SQL NULL.
using Param = std::optional<std::string>;

class Conn {
public:
    // Connects with a bounded timeout; throws PgError(connection_lost=true) naming the URL on failure.
    explicit Conn(const std::string& url, int connect_timeout_s = 3);
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;

    bool ok() const { return conn_ && PQstatus(conn_.get()) == CONNECTION_OK; }
    // Runs one statement; throws PgError on failure.
    Rows Exec(std::string_view sql, const std::vector<Param>& params = {});

private:
    std::unique_ptr<PGconn, decltype(&PQfinish)> conn_;
    std::string url_;
};

// Redacts the password of a postgres:// URL for messages.
std::string RedactUrl(const std::string& url);
// "{a,b}" array literal for a text[] parameter (elements quoted and escaped).
std::string TextArray(const std::vector<std::string>& items);

}  // namespace flare::pg
