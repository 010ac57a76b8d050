-- One row per evaluation run, detector and measure: the protocol's confusion counts and rates.
CREATE TABLE IF NOT EXISTS evaluation_results (
    run_id VARCHAR NOT NULL, evaluated_at TIMESTAMP NOT NULL, family VARCHAR NOT NULL,
    detector VARCHAR NOT NULL, measure VARCHAR NOT NULL, series INTEGER, failed INTEGER,
    tp BIGINT, fp BIGINT, tn BIGINT, fn BIGINT,
    accuracy DOUBLE, "precision" DOUBLE, recall DOUBLE, f1 DOUBLE, protocol VARCHAR NOT NULL
);
