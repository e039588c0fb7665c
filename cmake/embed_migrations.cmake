# Generates a C++ source holding every migrations/postgres/*.sql file, so that `flare migrate` and the
# PostgreSQL adapter carry the schema with the binary. Run at build time (see src/CMakeLists.txt).
file(GLOB files "${MIGRATIONS_DIR}/*.sql")
list(SORT files)
set(body "")
foreach(f IN LISTS files)
  get_filename_component(name "${f}" NAME)
  file(READ "${f}" sql)
  string(APPEND body "    {\"${name}\", R\"flaresql(${sql})flaresql\"},\n")
endforeach()
file(WRITE "${OUTPUT}.tmp" "// Generated from migrations/postgres/*.sql by cmake/embed_migrations.cmake. Do not edit.\n#include \"adapters/postgres/pg_migrations.hpp\"\n\nnamespace flare {\n\nstd::span<const PgMigration> PgMigrations() {\n    static const PgMigration kAll[] = {\n${body}    };\n    return kAll;\n}\n\n}  // namespace flare\n")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUTPUT}.tmp" "${OUTPUT}")
