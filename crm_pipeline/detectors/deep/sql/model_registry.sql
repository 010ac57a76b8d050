-- Every trained deep model version: what it learned from, how well and where. A row exists
-- only once its weights file is complete (written first, renamed into place, then recorded).
-- customer_keys lists the customers the version holds weights (or a scaling) for, so scoring
-- finds each customer's newest version; rows of older warehouses get it on first use.
CREATE TABLE IF NOT EXISTS model_registry (
    model VARCHAR NOT NULL, version VARCHAR PRIMARY KEY, mode VARCHAR NOT NULL,
    customers INTEGER NOT NULL, skipped INTEGER NOT NULL, windows BIGINT NOT NULL,
    trained_from DATE, trained_until DATE, epochs INTEGER NOT NULL, final_loss DOUBLE,
    device VARCHAR NOT NULL, seconds DOUBLE NOT NULL, path VARCHAR NOT NULL,
    columns VARCHAR NOT NULL, run_id VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL,
    customer_keys VARCHAR[]
);
ALTER TABLE model_registry ADD COLUMN IF NOT EXISTS customer_keys VARCHAR[];
