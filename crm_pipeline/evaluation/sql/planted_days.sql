-- The days an anomaly was planted for each customer the warehouse knows: planted_label_rows
-- (source_db, customer_id, event_date) joined to the warehouse's customer keys.
SELECT DISTINCT k.partition_key, l.event_date::DATE AS day
FROM planted_label_rows AS l JOIN customer_keys AS k USING (source_db, customer_id)
ORDER BY 1, 2
