-- Per-customer activity profile over every raw table, for the customers of one run.
-- Expects a table run_customers(partition_key) holding the run's partition keys.
WITH k AS (
    SELECT c.partition_key, c.source_db, c.customer_id
    FROM customer_keys AS c
    JOIN run_customers USING (partition_key)
),
tx AS (
    SELECT t.source_db, t.customer_id,
           count(*)                                                AS transactions,
           sum(CASE WHEN t.direction = 'in'  THEN t.amount ELSE 0 END) AS amount_in,
           sum(CASE WHEN t.direction = 'out' THEN t.amount ELSE 0 END) AS amount_out,
           count(DISTINCT t.counterpart)                           AS counterparts,
           min(t.event_date) AS first_tx, max(t.event_date) AS last_tx,
           count(DISTINCT date_trunc('month', t.event_date))       AS months_active
    FROM raw.transactions AS t JOIN k USING (source_db, customer_id)
    GROUP BY ALL
),
crm AS (
    SELECT source_db, customer_id,
           count(*) FILTER (WHERE entity = 'opportunities') AS opportunities,
           count(*) FILTER (WHERE entity = 'quotations')    AS quotations,
           count(*) FILTER (WHERE entity = 'orders')        AS orders,
           count(*) FILTER (WHERE entity = 'quotations' AND cancelled) AS cancelled_quotations,
           min(event_date) AS first_crm, max(event_date) AS last_crm
    FROM (
        SELECT 'opportunities' AS entity, source_db, customer_id, event_date,
               cancellation_detail IS NOT NULL AS cancelled FROM raw.opportunities
        UNION ALL
        SELECT 'quotations', source_db, customer_id, event_date,
               cancellation_detail IS NOT NULL FROM raw.quotations
        UNION ALL
        SELECT 'orders', source_db, customer_id, event_date,
               cancellation_detail IS NOT NULL FROM raw.orders
    ) AS e JOIN k USING (source_db, customer_id)
    GROUP BY ALL
)
SELECT k.partition_key, k.source_db, k.customer_id,
       cu.customer_name, cu.segment, cu.country,
       least(tx.first_tx, crm.first_crm)       AS first_event,
       greatest(tx.last_tx, crm.last_crm)      AS last_event,
       coalesce(tx.months_active, 0)           AS months_active,
       coalesce(tx.transactions, 0)            AS transactions,
       coalesce(tx.amount_in, 0)               AS amount_in,
       coalesce(tx.amount_out, 0)              AS amount_out,
       coalesce(tx.counterparts, 0)            AS counterparts,
       coalesce(crm.opportunities, 0)          AS opportunities,
       coalesce(crm.quotations, 0)             AS quotations,
       coalesce(crm.orders, 0)                 AS orders,
       coalesce(crm.cancelled_quotations, 0)   AS cancelled_quotations,
       ?::VARCHAR                              AS run_id,
       now()                                   AS updated_at
FROM k
LEFT JOIN tx USING (source_db, customer_id)
LEFT JOIN crm USING (source_db, customer_id)
LEFT JOIN raw.customers AS cu USING (source_db, customer_id)
