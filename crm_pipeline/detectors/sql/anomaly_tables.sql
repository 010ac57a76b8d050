-- Where the detectors' results go: one row per customer, measure, day and detector, the
-- per-series summary, and the series a detector could not score (with the reason).
CREATE TABLE IF NOT EXISTS anomaly_scores (
    partition_key VARCHAR NOT NULL, measure VARCHAR NOT NULL, day DATE NOT NULL,
    detector VARCHAR NOT NULL, score DOUBLE, threshold DOUBLE, flag BOOLEAN NOT NULL,
    model_version VARCHAR NOT NULL, run_id VARCHAR NOT NULL, scored_at TIMESTAMP NOT NULL
);
-- Deep detectors score events, not days: the event's record (quotation or opportunity), the
-- confidence of the flag and how many of the thresholds it reaches. NULL for series detectors.
ALTER TABLE anomaly_scores ADD COLUMN IF NOT EXISTS record_id VARCHAR;
ALTER TABLE anomaly_scores ADD COLUMN IF NOT EXISTS confidence DOUBLE;
ALTER TABLE anomaly_scores ADD COLUMN IF NOT EXISTS severity SMALLINT;
CREATE TABLE IF NOT EXISTS customer_anomalies (
    partition_key VARCHAR NOT NULL, measure VARCHAR NOT NULL, detector VARCHAR NOT NULL,
    days_scored INTEGER, anomalies INTEGER, anomaly_share DOUBLE, top_day DATE, top_score DOUBLE,
    silhouette DOUBLE, davies_bouldin DOUBLE, calinski_harabasz DOUBLE, seconds DOUBLE,
    error VARCHAR, model_version VARCHAR NOT NULL, run_id VARCHAR NOT NULL, scored_at TIMESTAMP NOT NULL
);
