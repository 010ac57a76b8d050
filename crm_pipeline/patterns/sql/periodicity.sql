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
hits AS (
    SELECT d.partition_key, d.measure, date_trunc('month', d.day) AS month, kinds.kind, kinds.value,
           bool_or(t.tau > 0 AND d.counterparts > t.tau) AS hit
    FROM daily AS d
    JOIN tau AS t ON t.partition_key = d.partition_key AND t.measure = d.measure AND t.year = year(d.day)
    CROSS JOIN LATERAL (
        VALUES ('weekday', isodow(d.day)), ('day_of_month', day(d.day))
    ) AS kinds(kind, value)
    GROUP BY ALL
),
months AS (
    SELECT partition_key, measure, count(DISTINCT date_trunc('month', day)) AS months
    FROM daily GROUP BY ALL
)
SELECT h.partition_key, h.measure, h.kind, h.value,
       count(*) FILTER (WHERE h.hit) AS months_hit, m.months,
       count(*) FILTER (WHERE h.hit) / m.months AS ratio,
       count(*) FILTER (WHERE h.hit) / m.months >= ?::DOUBLE AS cyclic
FROM hits AS h JOIN months AS m USING (partition_key, measure)
GROUP BY h.partition_key, h.measure, h.kind, h.value, m.months
