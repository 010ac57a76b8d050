-- Per-customer transaction series at four grains (day, week, month, quarter), incoming and
-- outgoing apart, on a complete calendar: a period without activity is a row of zeros.
-- Distinct counterparts are counted per period (not summed from days): a transaction counts
-- when it is its counterpart's first in the period and direction, found from the date of that
-- counterpart's previous transaction (one sort, then one aggregate over all grains). A NULL
-- counterpart does not count.
-- Expects run_customers(partition_key) and parameter 1 = the last day of the calendar.
WITH k AS (
    SELECT c.partition_key, c.source_db, c.customer_id
    FROM customer_keys AS c JOIN run_customers USING (partition_key)
),
tx AS (  -- prev_date: the same counterpart's previous transaction in the same direction
    SELECT k.partition_key, t.event_date, t.amount, t.counterpart, t.direction,
           lag(t.event_date) OVER (PARTITION BY k.partition_key, t.direction, t.counterpart
                                   ORDER BY t.event_date) AS prev_date
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
marked AS (  -- first_seen: the counterpart's first transaction of the period in this direction
    SELECT tx.partition_key, g.grain, date_trunc(g.grain, tx.event_date)::DATE AS period_start,
           tx.direction, tx.amount,
           tx.counterpart IS NOT NULL AND (tx.prev_date IS NULL
               OR date_trunc(g.grain, tx.prev_date) <> date_trunc(g.grain, tx.event_date)) AS first_seen
    FROM tx CROSS JOIN grains AS g
),
agg AS (
    SELECT partition_key, grain, period_start,
           sum(amount) FILTER (WHERE direction = 'in')                     AS amount_in,
           sum(amount) FILTER (WHERE direction = 'out')                    AS amount_out,
           count(*) FILTER (WHERE first_seen AND direction = 'in')         AS counterparts_in,
           count(*) FILTER (WHERE first_seen AND direction = 'out')        AS counterparts_out,
           count(*) FILTER (WHERE direction = 'in')                        AS transactions_in,
           count(*) FILTER (WHERE direction = 'out')                       AS transactions_out
    FROM marked
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
