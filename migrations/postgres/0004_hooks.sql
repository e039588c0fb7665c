-- Flare IM Core, PostgreSQL schema version 4: hooks managed through the business API, per tenant.
CREATE TABLE IF NOT EXISTS hooks (
    tenant_id  TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    spec_json  TEXT   NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
