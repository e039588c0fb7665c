// libpq helpers and schema migrations (see pg_conn.hpp and pg_migrations.hpp).
#include <algorithm>
#include <set>

#include "adapters/postgres/pg_conn.hpp"
#include "adapters/postgres/pg_migrations.hpp"

namespace flare {
namespace pg {

Conn::Conn(const std::string& url, int connect_timeout_s) : conn_(nullptr, &PQfinish), url_(url) {
    const std::string timeout = std::to_string(connect_timeout_s);
    // TCP keepalives: a PostgreSQL that vanished (host down, network cut) is noticed within about 20 s
    // instead of the kernel's two hours.
    const char* keys[] = {"dbname",    "connect_timeout", "application_name", "keepalives", "keepalives_idle",
                          "keepalives_interval", "keepalives_count", nullptr};
    const char* values[] = {url.c_str(), timeout.c_str(), "flare", "1", "10", "5", "2", nullptr};
    conn_.reset(PQconnectdbParams(keys, values, /*expand_dbname=*/1));
    if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
        std::string why = conn_ ? PQerrorMessage(conn_.get()) : "out of memory";
        while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) {
            why.pop_back();
        }
        throw PgError("cannot connect to PostgreSQL at " + RedactUrl(url) + ": " + why, "", true);
    }
    PQsetNoticeProcessor(conn_.get(), [](void*, const char*) {}, nullptr);
}

Rows Conn::Exec(std::string_view sql, const std::vector<Param>& params) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) {
        values.push_back(p ? p->c_str() : nullptr);
    }
    const std::string text(sql);
    PGresult* r = params.empty() ? PQexec(conn_.get(), text.c_str())
                                 : PQexecParams(conn_.get(), text.c_str(), static_cast<int>(params.size()), nullptr,
                                                values.data(), nullptr, nullptr, 0);
    Rows rows(r);
    const auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
        return rows;
    }
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    std::string why = r ? PQresultErrorMessage(r) : PQerrorMessage(conn_.get());
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) {
        why.pop_back();
    }
    const bool lost = PQstatus(conn_.get()) != CONNECTION_OK;
    throw PgError(why.empty() ? std::string("PostgreSQL error") : why, state ? state : "", lost);
}

std::string RedactUrl(const std::string& url) {
    const auto scheme = url.find("://");
    const auto at = url.find('@');
    if (scheme == std::string::npos || at == std::string::npos || at < scheme) {
        return url;
    }
    const auto colon = url.find(':', scheme + 3);
    if (colon == std::string::npos || colon > at) {
        return url;
    }
    return url.substr(0, colon + 1) + "***" + url.substr(at);
}

std::string TextArray(const std::vector<std::string>& items) {
    std::string out = "{";
    for (size_t i = 0; i < items.size(); ++i) {
        if (i) {
            out += ',';
        }
        out += '"';
        for (char c : items[i]) {
            if (c == '"' || c == '\\') {
                out += '\\';
            }
            out += c;
        }
        out += '"';
    }
    return out + "}";
}

}  // namespace pg

namespace {

constexpr const char* kMigrationsTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_ms BIGINT NOT NULL)";
// Any constant: serializes concurrent `flare migrate` runs on one database.
constexpr const char* kLockKey = "74229031";

std::set<std::string> Applied(pg::Conn& c) {
    std::set<std::string> out;
    auto rows = c.Exec("SELECT name FROM schema_migrations");
    for (int i = 0; i < rows.size(); ++i) {
        out.insert(rows.Text(i, 0));
    }
    return out;
}

}  // namespace

Result<std::vector<std::string>> PgMigrate(const std::string& database_url) {
    std::optional<pg::Conn> conn;
    try {
        conn.emplace(database_url);
    } catch (const pg::PgError& e) {
        return MakeError(Errc::kUnavailable, "database_unavailable", e.what());
    }
    std::vector<std::string> applied_now;
    std::string current;
    try {
        // Held for the whole run (released when the connection closes), so that even creating the
        // bookkeeping table cannot race another `flare migrate`.
        conn->Exec(std::string("SELECT pg_advisory_lock(") + kLockKey + ")");
        conn->Exec(kMigrationsTable);
        for (const auto& m : PgMigrations()) {
            current = m.name;
            conn->Exec("BEGIN");
            auto done = conn->Exec("SELECT 1 FROM schema_migrations WHERE name = $1", {std::string(m.name)});
            if (done.size() == 0) {
                conn->Exec(m.sql);
                conn->Exec("INSERT INTO schema_migrations (name, applied_ms) "
                           "VALUES ($1, (extract(epoch from clock_timestamp()) * 1000)::bigint)",
                           {std::string(m.name)});
                applied_now.push_back(m.name);
            }
            conn->Exec("COMMIT");
        }
    } catch (const pg::PgError& e) {
        if (e.connection_lost) {
            return MakeError(Errc::kUnavailable, "database_unavailable",
                             "lost the connection to " + pg::RedactUrl(database_url) + " during " + current + ": " +
                                 e.what());
        }
        try {
            conn->Exec("ROLLBACK");
        } catch (const pg::PgError&) {
        }
        return MakeError(Errc::kInternal, "migration_failed",
                         "migration " + current + " failed and was rolled back: " + e.what());
    }
    return applied_now;
}

Result<PgSchemaState> PgCheckSchema(const std::string& database_url) {
    try {
        pg::Conn conn(database_url);
        auto exists = conn.Exec("SELECT to_regclass('schema_migrations') IS NOT NULL");
        std::set<std::string> applied;
        if (exists.Text(0, 0) == "t") {
            applied = Applied(conn);
        }
        PgSchemaState state;
        std::set<std::string> known;
        for (const auto& m : PgMigrations()) {
            known.insert(m.name);
            if (!applied.contains(m.name)) {
                state.missing.push_back(m.name);
            }
        }
        for (const auto& a : applied) {
            if (!known.contains(a)) {
                state.unknown.push_back(a);
            }
        }
        return state;
    } catch (const pg::PgError& e) {
        return MakeError(Errc::kUnavailable, "database_unavailable", e.what());
    }
}

}  // namespace flare
