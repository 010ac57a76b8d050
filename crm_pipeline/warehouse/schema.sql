-- Bookkeeping tables of the warehouse; raw entity tables are generated from crm_pipeline.entities.
CREATE SCHEMA IF NOT EXISTS raw;        -- views of committed rows: what every reader uses
CREATE SCHEMA IF NOT EXISTS raw_store;  -- physical rows, committed or in flight

-- One row per committed partition write; rows whose load_id is not here are invisible.
CREATE TABLE IF NOT EXISTS loads (
    load_id       VARCHAR PRIMARY KEY,
    run_id        VARCHAR NOT NULL,
    entity        VARCHAR NOT NULL,
    partition_key VARCHAR NOT NULL,
    committed_at  TIMESTAMP NOT NULL
);

-- One row per database per extraction of an entity partition.
CREATE TABLE IF NOT EXISTS extraction_log (
    run_id        VARCHAR NOT NULL,
    entity        VARCHAR NOT NULL,
    partition_key VARCHAR NOT NULL,
    source_db     VARCHAR NOT NULL,
    status        VARCHAR NOT NULL,   -- ok | failed | cancelled
    row_count     BIGINT  NOT NULL,
    seconds       DOUBLE  NOT NULL,
    error         VARCHAR,
    logged_at     TIMESTAMP NOT NULL
);

-- Rows a source returned that cannot be loaded (NULL key, date outside the partition).
CREATE TABLE IF NOT EXISTS rejected_rows (
    run_id        VARCHAR NOT NULL,
    load_id       VARCHAR NOT NULL,
    entity        VARCHAR NOT NULL,
    partition_key VARCHAR NOT NULL,
    source_db     VARCHAR NOT NULL,
    reason        VARCHAR NOT NULL,
    row_json      VARCHAR NOT NULL,
    rejected_at   TIMESTAMP NOT NULL
);

-- (source database, customer id) -> safe Dagster partition key; keys are never reused.
CREATE TABLE IF NOT EXISTS customer_keys (
    source_db     VARCHAR NOT NULL,
    customer_id   VARCHAR NOT NULL,
    partition_key VARCHAR NOT NULL UNIQUE,
    first_run_id  VARCHAR NOT NULL,
    added_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (source_db, customer_id)
);
