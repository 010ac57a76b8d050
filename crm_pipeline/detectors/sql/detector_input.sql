-- The lag dataset of the run's customers after warm-up, for the chosen measures, limited to
-- each customer's last N days (the paper worked on two years of history). Customers that
-- customer_history marks as too short are left out unless parameter 3 is true.
-- Parameters: 1 = the measures (VARCHAR[]), 2 = N days, 3 = score short histories too.
WITH rows AS (
    SELECT l.*, max(l.day) OVER (PARTITION BY l.partition_key, l.measure) AS last_day
    FROM lag_features AS l
    JOIN run_customers USING (partition_key)
    JOIN customer_history AS h USING (partition_key)
    WHERE NOT l.is_warmup AND list_contains(?::VARCHAR[], l.measure) AND (h.sufficient_history OR ?::BOOLEAN)
)
SELECT * EXCLUDE (last_day, is_warmup) FROM rows
WHERE day > last_day - ?::INTEGER
ORDER BY partition_key, measure, day
