-- Learn categorical codes: every category of every encoded column gets a code once and keeps it.
-- New categories are appended after the column's highest code, so a new month never renumbers
-- old codes. Code 0 means "none" (NULL) and -1 "unseen" (see crm_events.sql); learned codes start at 1.
INSERT INTO crm_encodings
WITH observed AS (
    SELECT 'trading_currency' AS column_name, trading_currency AS category FROM raw.quotations
    UNION SELECT 'trading_currency', trading_currency FROM raw.opportunities
    UNION SELECT 'trading_currency', trading_currency FROM raw.orders
    UNION SELECT 'opportunity_cancellation', cancellation_detail FROM raw.opportunities
    UNION SELECT 'quotation_cancellation', cancellation_detail FROM raw.quotations
    UNION SELECT 'order_cancellation', cancellation_detail FROM raw.orders
),
new AS (
    SELECT o.column_name, o.category FROM observed AS o
    ANTI JOIN crm_encodings AS e USING (column_name, category)
    WHERE o.category IS NOT NULL
)
SELECT n.column_name, n.category,
       coalesce((SELECT max(code) FROM crm_encodings AS e WHERE e.column_name = n.column_name), 0)
         + row_number() OVER (PARTITION BY n.column_name ORDER BY n.category) AS code,
       ?::VARCHAR AS run_id, now() AS added_at
FROM new AS n
