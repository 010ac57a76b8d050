-- SHAP values of flagged events: per event, detector, input column and look-back step
-- (0 = the event itself, k = k events before, -k = k events after: the autoencoder's first
-- events are explained by the customer's first window), with the explained model output (a deep
-- model's error, a tree forecaster's forecast, an isolation forest's path length: see
-- explainer) and its expectation over the background. A classical detector's day is
-- record_id '<measure> <day>'.
CREATE TABLE IF NOT EXISTS shap_values (
    partition_key VARCHAR NOT NULL, record_id VARCHAR NOT NULL, day DATE NOT NULL,
    detector VARCHAR NOT NULL, model_version VARCHAR NOT NULL, column_name VARCHAR NOT NULL,
    step SMALLINT NOT NULL, shap_value DOUBLE NOT NULL, explained_output DOUBLE NOT NULL,
    expected_output DOUBLE NOT NULL, explainer VARCHAR NOT NULL, run_id VARCHAR NOT NULL,
    explained_at TIMESTAMP NOT NULL
);
