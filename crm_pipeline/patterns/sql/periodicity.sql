-- Periodicity (Soro, Mellia, Russo): per customer, direction and year, tau = share x the year's
-- maximum of daily distinct counterparts. A weekday (or day of month) is cyclic when some day of
-- that kind exceeds tau in at least min_ratio of the customer's months.
-- Parameters: 1 = tau share (0.8), 2 = minimum share of months (0.85).
WITH daily AS (
    UNPIVOT (
        SELECT s.partition_key, s.period_start AS day, s.counterparts_in, s.counterparts_out
        FROM customer_series AS s JOIN run_customers USING (partition_key)
        WHERE s.grain = 'day'
    ) ON counterparts_in, counterparts_out INTO NAME measure VALUE counterparts
),
tau AS (
    SELECT partition_key, measure, year(day) AS year, ?::DOUBLE * max(counterparts) AS tau
    FROM daily GROUP BY ALL
),
marked AS (
    SELECT d.partition_key, d.measure, d.day, t.tau > 0 AND d.counterparts > t.tau AS hit
    FROM daily AS d
    JOIN tau AS t ON t.partition_key = d.partition_key AND t.measure = d.measure AND t.year = year(d.day)
),
kinds AS (
    SELECT partition_key, measure, 'weekday' AS kind, isodow(day) AS value, day, hit FROM marked
    UNION ALL
    SELECT partition_key, measure, 'day_of_month', day(day), day, hit FROM marked
),
months AS (
    SELECT partition_key, measure, count(DISTINCT date_trunc('month', day)) AS months
    FROM daily GROUP BY ALL
),
hit_months AS (  -- a month counts once per kind and value, however many of its days hit
    SELECT partition_key, measure, kind, value, count(DISTINCT date_trunc('month', day)) AS months_hit
    FROM kinds WHERE hit GROUP BY ALL
),
counted AS (
    SELECT k.partition_key, k.measure, k.kind, k.value, coalesce(h.months_hit, 0) AS months_hit
    FROM (SELECT DISTINCT partition_key, measure, kind, value FROM kinds) AS k
    LEFT JOIN hit_months AS h USING (partition_key, measure, kind, value)
)
SELECT c.partition_key, c.measure, c.kind, c.value, c.months_hit, m.months,
       c.months_hit / m.months AS ratio,
       c.months_hit / m.months >= ?::DOUBLE AS cyclic
FROM counted AS c JOIN months AS m USING (partition_key, measure)
