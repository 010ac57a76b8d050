-- Quarter-over-quarter change across years: each quarter against the same quarter a year before.
-- Only quarters the calendar covers completely count (a half-finished quarter is not a drop).
-- Parameter 1: the flag threshold on |delta| (0.30).
WITH span AS (
    SELECT partition_key, min(period_start) AS first_day, max(period_start) AS last_day
    FROM customer_series JOIN run_customers USING (partition_key)
    WHERE grain = 'day' GROUP BY 1
),
q AS (
    UNPIVOT (
        SELECT s.partition_key, s.period_start AS quarter_start,
               s.amount_in::DOUBLE AS amount_in, s.amount_out::DOUBLE AS amount_out
        FROM customer_series AS s JOIN span USING (partition_key)
        WHERE s.grain = 'quarter' AND s.period_start >= span.first_day
          AND s.period_start + INTERVAL 3 MONTH <= span.last_day + INTERVAL 1 DAY
    ) ON amount_in, amount_out INTO NAME measure VALUE total
)
SELECT cur.partition_key, cur.measure, cur.quarter_start, cur.total, prev.total AS previous_year_total,
       CASE WHEN prev.total <> 0 THEN (cur.total - prev.total) / abs(prev.total) END AS delta,
       coalesce(abs((cur.total - prev.total) / nullif(abs(prev.total), 0)) >= ?::DOUBLE, false) AS flagged
FROM q AS cur
JOIN q AS prev ON prev.partition_key = cur.partition_key AND prev.measure = cur.measure
              AND prev.quarter_start = cur.quarter_start - INTERVAL 1 YEAR
