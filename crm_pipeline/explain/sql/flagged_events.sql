-- The events to explain: each run customer's highest-scored flags of one detector's version,
-- at least $min_severity thresholds reached, at most $per_customer of them per customer.
SELECT partition_key, record_id
FROM anomaly_scores JOIN run_customers USING (partition_key)
WHERE detector = $detector AND model_version = $version AND measure = 'crm_events'
  AND severity >= $min_severity
QUALIFY row_number() OVER (PARTITION BY partition_key ORDER BY score DESC, record_id) <= $per_customer
ORDER BY partition_key, record_id
