-- The lag dataset (Soro, Mellia, Russo, Table 1) for the run's customers, one row per customer,
-- measure and day. Every feature reads only the day itself and earlier days: averages and the
-- neighbourhoods end the day before, previous weeks/months are complete calendar periods.
-- A window that does not fit since the series start is NULL; such days are flagged is_warmup.
WITH series AS (
    SELECT s.* FROM customer_series AS s JOIN run_customers USING (partition_key)
),
long AS (
    UNPIVOT (
        SELECT partition_key, grain, period_start,
               amount_in::DOUBLE AS amount_in, amount_out::DOUBLE AS amount_out,
               counterparts_in::DOUBLE AS counterparts_in, counterparts_out::DOUBLE AS counterparts_out
        FROM series
    ) ON amount_in, amount_out, counterparts_in, counterparts_out INTO NAME measure VALUE y
),
weeks AS (
    SELECT partition_key, measure, period_start AS week,
           lag(y, 1) OVER p AS prev_week_1, lag(y, 2) OVER p AS prev_week_2, lag(y, 3) OVER p AS prev_week_3
    FROM long WHERE grain = 'week'
    WINDOW p AS (PARTITION BY partition_key, measure ORDER BY period_start)
),
months AS (
    SELECT partition_key, measure, period_start AS month,
           lag(y, 1) OVER p AS prev_month_1, lag(y, 2) OVER p AS prev_month_2, lag(y, 3) OVER p AS prev_month_3
    FROM long WHERE grain = 'month'
    WINDOW p AS (PARTITION BY partition_key, measure ORDER BY period_start)
),
days AS (
    SELECT partition_key, measure, period_start AS day, y,
           row_number() OVER p AS n,
           min(period_start) OVER (PARTITION BY partition_key, measure) AS first_day,
           lag(y, 1) OVER p AS y_lag1, lag(y, 2) OVER p AS y_lag2, lag(y, 3) OVER p AS y_lag3,
           lag(y, 4) OVER p AS y_lag4, lag(y, 5) OVER p AS y_lag5, lag(y, 6) OVER p AS y_lag6,
           avg(y) OVER (p ROWS BETWEEN 7 PRECEDING AND 1 PRECEDING)   AS week_avg_raw,
           avg(y) OVER (p ROWS BETWEEN 30 PRECEDING AND 1 PRECEDING)  AS month_avg_raw,
           avg(y) OVER (p ROWS BETWEEN 90 PRECEDING AND 1 PRECEDING)  AS quarter_avg_raw,
           sum(y) OVER (p ROWS BETWEEN 9 PRECEDING AND 5 PRECEDING)   AS nbhd_week_raw,
           sum(y) OVER (p ROWS BETWEEN 32 PRECEDING AND 28 PRECEDING) AS nbhd_month_raw
    FROM long WHERE grain = 'day'
    WINDOW p AS (PARTITION BY partition_key, measure ORDER BY period_start)
)
SELECT d.partition_key, d.measure, d.day, d.y,
       d.y_lag1, d.y_lag2, d.y_lag3, d.y_lag4, d.y_lag5, d.y_lag6,
       CASE WHEN d.n > 7 THEN d.week_avg_raw END     AS week_avg,
       CASE WHEN d.n > 30 THEN d.month_avg_raw END   AS month_avg,
       CASE WHEN d.n > 90 THEN d.quarter_avg_raw END AS quarter_avg,
       isodow(d.day) = 1 AS is_monday,   isodow(d.day) = 2 AS is_tuesday,
       isodow(d.day) = 3 AS is_wednesday, isodow(d.day) = 4 AS is_thursday,
       isodow(d.day) = 5 AS is_friday,   isodow(d.day) = 6 AS is_saturday,
       isodow(d.day) = 7 AS is_sunday,
       w.prev_week_1, w.prev_week_2, w.prev_week_3,
       m.prev_month_1, m.prev_month_2, m.prev_month_3,
       CASE WHEN d.n > 9 THEN d.nbhd_week_raw END    AS nbhd_prev_week,
       CASE WHEN d.n > 32 THEN d.nbhd_month_raw END  AS nbhd_prev_month,
       d.day < greatest(d.first_day + INTERVAL 90 DAY,
                        date_trunc('month', d.first_day) + INTERVAL 3 MONTH) AS is_warmup
FROM days AS d
JOIN weeks AS w ON w.partition_key = d.partition_key AND w.measure = d.measure
               AND w.week = date_trunc('week', d.day)
JOIN months AS m ON m.partition_key = d.partition_key AND m.measure = d.measure
                AND m.month = date_trunc('month', d.day)
