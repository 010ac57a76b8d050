-- One row per evaluation run, detector and measure: the protocol's confusion counts and rates.
-- fp_planted / tn_planted: flagged / unflagged days the source itself marks anomalous (the demo's
-- planted labels), left out of fp, tn and precision; precision_strict counts them false.
CREATE TABLE IF NOT EXISTS evaluation_results (
    run_id VARCHAR NOT NULL, evaluated_at TIMESTAMP NOT NULL, family VARCHAR NOT NULL,
    detector VARCHAR NOT NULL, measure VARCHAR NOT NULL, series INTEGER, failed INTEGER,
    tp BIGINT, fp BIGINT, tn BIGINT, fn BIGINT,
    accuracy DOUBLE, "precision" DOUBLE, recall DOUBLE, f1 DOUBLE, protocol VARCHAR NOT NULL,
    fp_planted BIGINT, tn_planted BIGINT, precision_strict DOUBLE
);
-- a table written before the planted-day counts gets their columns (its rows keep NULL there)
ALTER TABLE evaluation_results ADD COLUMN IF NOT EXISTS fp_planted BIGINT;
ALTER TABLE evaluation_results ADD COLUMN IF NOT EXISTS tn_planted BIGINT;
ALTER TABLE evaluation_results ADD COLUMN IF NOT EXISTS precision_strict DOUBLE;
