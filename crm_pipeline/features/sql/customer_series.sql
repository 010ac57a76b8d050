-- Per-customer transaction series at four grains (day, week, month, quarter), incoming and
-- outgoing apart, on a complete calendar: a period without activity is a row of zeros.
-- Distinct counterparts are counted per period (not summed from days); a NULL counterpart
-- does not count.
-- Expects run_customers(partition_key) and parameter 1 = the last day of the calendar.
WITH k AS (
    SELECT c.partition_key, c.source_db, c.customer_id
    FROM customer_keys AS c JOIN run_customers USING (partition_key)
),
tx AS (
    SELECT k.partition_key, t.event_date, t.amount, t.counterpart, t.direction
    FROM raw.transactions AS t JOIN k USING (source_db, customer_id)
    WHERE t.event_date <= ?::DATE
),
grains(grain) AS (VALUES ('day'), ('week'), ('month'), ('quarter')),
span AS (
    SELECT partition_key, min(event_date) AS first_day, ?::DATE AS last_day
    FROM tx GROUP BY partition_key
),
calendar AS (
    SELECT s.partition_key, g.grain,
           unnest(generate_series(date_trunc(g.grain, s.first_day), s.last_day,
                  CASE g.grain WHEN 'day' THEN INTERVAL 1 DAY WHEN 'week' THEN INTERVAL 7 DAY
                               WHEN 'month' THEN INTERVAL 1 MONTH ELSE INTERVAL 3 MONTH END))::DATE
               AS period_start
    FROM span AS s CROSS JOIN grains AS g
),
pairs AS (  -- one row per period, direction and counterpart: distinct counts become count()
    SELECT tx.partition_key, g.grain, date_trunc(g.grain, tx.event_date)::DATE AS period_start,
           tx.direction, tx.counterpart, sum(tx.amount) AS amount, count(*) AS transactions
    FROM tx CROSS JOIN grains AS g
    GROUP BY ALL
),
agg AS (
    SELECT partition_key, grain, period_start,
           sum(amount) FILTER (WHERE direction = 'in')         AS amount_in,
           sum(amount) FILTER (WHERE direction = 'out')        AS amount_out,
           count(counterpart) FILTER (WHERE direction = 'in')  AS counterparts_in,
           count(counterpart) FILTER (WHERE direction = 'out') AS counterparts_out,
           sum(transactions) FILTER (WHERE direction = 'in')   AS transactions_in,
           sum(transactions) FILTER (WHERE direction = 'out')  AS transactions_out
    FROM pairs
    GROUP BY ALL
)
SELECT c.partition_key, c.grain, c.period_start,
       coalesce(a.amount_in, 0)::DECIMAL(18, 2)  AS amount_in,
       coalesce(a.amount_out, 0)::DECIMAL(18, 2) AS amount_out,
       coalesce(a.counterparts_in, 0)            AS counterparts_in,
       coalesce(a.counterparts_out, 0)           AS counterparts_out,
       coalesce(a.transactions_in, 0)            AS transactions_in,
       coalesce(a.transactions_out, 0)           AS transactions_out
FROM calendar AS c
LEFT JOIN agg AS a USING (partition_key, grain, period_start)
