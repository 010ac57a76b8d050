-- Ordinary least squares of each customer's monthly totals on the month index, in one pass:
-- slope, intercept and the sums needed for the slope's standard error (p-value in Python).
-- Only months the calendar covers completely count (a partial first or last month is not a trend).
WITH span AS (
    SELECT partition_key, min(period_start) AS first_day, max(period_start) AS last_day
    FROM customer_series JOIN run_customers USING (partition_key)
    WHERE grain = 'day' GROUP BY 1
),
complete AS (
    SELECT s.partition_key, s.period_start, s.amount_in, s.amount_out
    FROM customer_series AS s JOIN span USING (partition_key)
    WHERE s.grain = 'month' AND s.period_start >= span.first_day
      AND s.period_start + INTERVAL 1 MONTH <= span.last_day + INTERVAL 1 DAY
),
m AS (
    UNPIVOT (
        SELECT partition_key,
               date_diff('month', min(period_start) OVER (PARTITION BY partition_key), period_start) AS t,
               amount_in::DOUBLE AS amount_in, amount_out::DOUBLE AS amount_out
        FROM complete
    ) ON amount_in, amount_out INTO NAME measure VALUE total
)
SELECT partition_key, measure, count(*) AS months,
       regr_slope(total, t) AS slope, regr_intercept(total, t) AS intercept,
       regr_sxx(total, t) AS sxx, regr_syy(total, t) AS syy, regr_sxy(total, t) AS sxy,
       avg(total) AS mean_total
FROM m GROUP BY ALL
