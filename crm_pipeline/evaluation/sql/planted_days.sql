-- The days an anomaly was planted for each customer the warehouse knows, per scope: planted_label_rows
-- (source_db, customer_id, event_date, scope) joined to the warehouse's customer keys.
SELECT DISTINCT k.partition_key, l.scope, l.event_date::DATE AS day
FROM planted_label_rows AS l JOIN customer_keys AS k USING (source_db, customer_id)
ORDER BY ALL
