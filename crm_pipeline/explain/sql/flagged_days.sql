-- The days to explain: each run customer's and measure's most anomalous flagged days of one
-- classical detector's version (score over threshold), at most $per_customer per series, with
-- how many days that series was scored on (the explanation refits on the same days).
SELECT partition_key, measure, day, days_scored
FROM (
    SELECT *, count(*) OVER (PARTITION BY partition_key, measure) AS days_scored
    FROM anomaly_scores JOIN run_customers USING (partition_key)
    WHERE detector = $detector AND model_version = $version AND measure <> 'crm_events'
)
WHERE flag
QUALIFY row_number() OVER (
    PARTITION BY partition_key, measure ORDER BY score / nullif(threshold, 0) DESC NULLS LAST, day
) <= $per_customer
ORDER BY partition_key, measure, day
