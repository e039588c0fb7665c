// PostgreSQL schema migrations: the files of migrations/postgres/, embedded at build time, and the
// function that applies the missing ones. Used by `flare migrate`, scripts/migrate_db.sh and tests.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "common/errc.hpp"

namespace flare {

struct PgMigration {
    const char* name;  // file name, e.g. "0001_init.sql"; applied in name order
    const char* sql;
};

// Every migration this binary knows, sorted by name (generated: pg_migrations.cpp).
std::span<const PgMigration> PgMigrations();

// Applies, in name order and each in its own transaction, the migrations not yet recorded in the
// database's `schema_migrations` table. Idempotent and safe to run from several processes at once
// (an advisory lock serializes them); never drops or rewrites anything. Returns the names applied now.
// Errors: kUnavailable when the database cannot be reached, kInternal when a migration fails (its
// transaction is rolled back; the message names the file and PostgreSQL's error).
Result<std::vector<std::string>> PgMigrate(const std::string& database_url);

// Names of applied migrations this binary does not know, and known ones not yet applied.
struct PgSchemaState {
    std::vector<std::string> missing;  // known here, not applied: run `flare migrate`
    std::vector<std::string> unknown;  // applied, not known here: the database is newer than this binary
};
Result<PgSchemaState> PgCheckSchema(const std::string& database_url);

}  // namespace flare
