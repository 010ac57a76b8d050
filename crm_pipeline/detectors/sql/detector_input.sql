-- The lag dataset of the run's customers after warm-up, for the chosen measures, limited to
-- each customer's last N days (parameter 2; the paper worked on two years of history).
-- Parameter 1: the measures (VARCHAR[]).
WITH rows AS (
    SELECT l.*, max(l.day) OVER (PARTITION BY l.partition_key, l.measure) AS last_day
    FROM lag_features AS l JOIN run_customers USING (partition_key)
    WHERE NOT l.is_warmup AND list_contains(?::VARCHAR[], l.measure)
)
SELECT * EXCLUDE (last_day, is_warmup) FROM rows
WHERE day > last_day - ?::INTEGER
ORDER BY partition_key, measure, day
