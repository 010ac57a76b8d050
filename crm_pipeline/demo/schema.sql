-- Shared CRM schema of every demo tenant database (valid in SQLite and PostgreSQL).
CREATE TABLE accounts (
    account_id   VARCHAR(40) PRIMARY KEY,
    account_name VARCHAR(200) NOT NULL,
    segment      VARCHAR(40),
    country      VARCHAR(2),
    created_on   DATE
);
CREATE TABLE opportunities (
    opportunity_id      VARCHAR(40) PRIMARY KEY,
    account_id          VARCHAR(40) NOT NULL,
    process_date        DATE NOT NULL,
    buy_interest        VARCHAR(20),
    trading_currency    VARCHAR(3),
    cancellation_detail VARCHAR(100)
);
CREATE TABLE quotations (
    quotation_id        VARCHAR(40) PRIMARY KEY,
    opportunity_id      VARCHAR(40) NOT NULL,
    account_id          VARCHAR(40) NOT NULL,
    quotation_date      DATE NOT NULL,
    buy_interest        VARCHAR(20),
    subtotal            NUMERIC(18, 2),
    trading_currency    VARCHAR(3),
    cancellation_detail VARCHAR(100)
);
CREATE TABLE customer_orders (
    order_id            VARCHAR(40) PRIMARY KEY,
    quotation_id        VARCHAR(40) NOT NULL,
    account_id          VARCHAR(40) NOT NULL,
    order_date          DATE NOT NULL,
    amount              NUMERIC(18, 2),
    trading_currency    VARCHAR(3),
    cancellation_detail VARCHAR(100)
);
CREATE TABLE transactions (
    transaction_id VARCHAR(40) PRIMARY KEY,
    account_id     VARCHAR(40) NOT NULL,
    booking_date   DATE NOT NULL,
    amount         NUMERIC(18, 2) NOT NULL,
    counterpart    VARCHAR(40),
    direction      VARCHAR(3) NOT NULL
);
-- Ground truth of the planted anomalies (not extracted by the pipeline's queries).
CREATE TABLE anomaly_labels (
    entity     VARCHAR(20) NOT NULL,
    record_id  VARCHAR(40) NOT NULL,
    account_id VARCHAR(40) NOT NULL,
    event_date DATE NOT NULL,
    kind       VARCHAR(40) NOT NULL
);
CREATE INDEX ix_opportunities_date ON opportunities (process_date);
CREATE INDEX ix_quotations_date ON quotations (quotation_date);
CREATE INDEX ix_orders_date ON customer_orders (order_date);
CREATE INDEX ix_transactions_date ON transactions (booking_date);
