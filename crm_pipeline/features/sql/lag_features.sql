-- The lag dataset (Soro, Mellia, Russo, Table 1) for the run's customers, one row per customer,
-- measure and day. Every feature reads only the day itself and earlier days: averages and the
-- neighbourhoods end the day before, previous weeks/months are complete calendar periods.
-- A window that does not fit since the series start is NULL; such days are flagged is_warmup.
--
-- The windows run over the wide series (the four measures as columns, one row per customer and
-- day) and the result is unpivoted last: a quarter of the rows to sort and join. Moving sums and
-- averages are differences of the running sums computed in `numbered`. The braced names are
-- filled by features/lag_sql.py, one expression per feature and measure.
WITH series AS (
    SELECT s.partition_key, s.grain, s.period_start,
           amount_in::DOUBLE AS amount_in, amount_out::DOUBLE AS amount_out,
           counterparts_in::DOUBLE AS counterparts_in, counterparts_out::DOUBLE AS counterparts_out
    FROM customer_series AS s JOIN run_customers USING (partition_key)
),
numbered AS (
    SELECT *, row_number() OVER p AS n, first_value(period_start) OVER p AS first_day, {running_sums}
    FROM series WHERE grain = 'day'
    WINDOW p AS (PARTITION BY partition_key ORDER BY period_start)
),
days AS (
    SELECT partition_key, period_start AS day, first_day, {day_features}
    FROM numbered
    WINDOW p AS (PARTITION BY partition_key ORDER BY period_start)
),
weeks AS (
    SELECT partition_key, period_start AS week, {week_features}
    FROM series WHERE grain = 'week'
    WINDOW p AS (PARTITION BY partition_key ORDER BY period_start)
),
months AS (
    SELECT partition_key, period_start AS month, {month_features}
    FROM series WHERE grain = 'month'
    WINDOW p AS (PARTITION BY partition_key ORDER BY period_start)
),
wide AS (
    SELECT d.*, w.* EXCLUDE (partition_key, week), m.* EXCLUDE (partition_key, month)
    FROM days AS d
    JOIN weeks AS w ON w.partition_key = d.partition_key AND w.week = date_trunc('week', d.day)
    JOIN months AS m ON m.partition_key = d.partition_key AND m.month = date_trunc('month', d.day)
)
SELECT partition_key, measure, day, {columns},
       day < greatest(first_day + INTERVAL 90 DAY,
                      date_trunc('month', first_day) + INTERVAL 3 MONTH) AS is_warmup
FROM wide UNPIVOT INCLUDE NULLS (({features}) FOR measure IN ({measure_groups}))
