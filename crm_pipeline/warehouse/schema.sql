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

-- Categorical codes of the encoded CRM columns; a code, once given, never changes.
CREATE TABLE IF NOT EXISTS crm_encodings (
    column_name VARCHAR NOT NULL,
    category    VARCHAR NOT NULL,
    code        INTEGER NOT NULL,
    run_id      VARCHAR NOT NULL,
    added_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (column_name, category),
    UNIQUE (column_name, code)
);

-- Ordinal levels of buy interest (opportunities and quotations); edit to match your CRM's labels.
CREATE TABLE IF NOT EXISTS buy_interest_levels (label VARCHAR PRIMARY KEY, level INTEGER NOT NULL);
INSERT OR IGNORE INTO buy_interest_levels VALUES ('low', 1), ('medium', 2), ('high', 3), ('very high', 4);

-- Conversion of quotation subtotals to EUR, yours to load: (currency, valid_from, rate_to_eur). A
-- quotation takes its currency's rate with the latest valid_from on or before its date (one row
-- per currency for a fixed rate, one per day or month for a history); before a currency's first
-- valid_from it gets NULL, never a guess.
CREATE TABLE IF NOT EXISTS fx_rates (
    currency    VARCHAR NOT NULL,
    valid_from  DATE NOT NULL,
    rate_to_eur DOUBLE NOT NULL,
    PRIMARY KEY (currency, valid_from)
);
-- Round demo rates, for a currency that has no row at all in fx_rates (the demo's currencies).
CREATE OR REPLACE VIEW fx_demo_rates AS
SELECT * FROM (VALUES ('USD', 0.9), ('GBP', 1.15), ('CHF', 1.0), ('SEK', 0.09),
                      ('JPY', 0.0065), ('BRL', 0.18), ('ZAR', 0.05)) AS demo(currency, rate_to_eur);
-- The rates crm_events converts with: every loaded rate; EUR at 1 unless you load EUR rows; a demo
-- rate (valid from 1900) only for a currency without any, so a loaded history never falls back to one.
CREATE OR REPLACE VIEW fx_rates_in_use AS
SELECT currency, valid_from, rate_to_eur, false AS demo FROM fx_rates
UNION ALL
SELECT 'EUR', DATE '1900-01-01', 1.0, false WHERE 'EUR' NOT IN (SELECT currency FROM fx_rates)
UNION ALL
SELECT currency, DATE '1900-01-01', rate_to_eur, true FROM fx_demo_rates
WHERE currency NOT IN (SELECT currency FROM fx_rates);
