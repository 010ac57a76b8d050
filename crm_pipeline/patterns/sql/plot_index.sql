-- One row per customer with a series (customer_history), for the index page of the pattern
-- plots: its months of history, cyclic days (per direction), significant monthly trends and how
-- many quarters were flagged.
WITH cyclic AS (
    SELECT partition_key,
           string_agg(replace(measure, 'counterparts_', '') || ' '
                      || CASE kind WHEN 'weekday' THEN ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'][value]
                              ELSE 'day ' || value END,
                      ', ' ORDER BY measure, kind DESC, value) AS cyclic_days
    FROM pattern_periodicity WHERE cyclic GROUP BY 1
),
trends AS (
    SELECT partition_key,
           string_agg(measure || ' ' || direction || ' (' || printf('%.3g', slope) || ' a month, p = '
                      || printf('%.2g', p_value) || ')', '; ' ORDER BY measure)
               FILTER (WHERE significant) AS monthly_trends
    FROM pattern_monthly_trend GROUP BY 1
),
quarters AS (
    SELECT partition_key, count(*) FILTER (WHERE flagged) AS flagged_quarters
    FROM pattern_quarter_trend GROUP BY 1
)
SELECT partition_key, months, coalesce(cyclic_days, '') AS cyclic_days,
       coalesce(monthly_trends, '') AS monthly_trends, coalesce(flagged_quarters, 0) AS flagged_quarters
FROM customer_history
LEFT JOIN trends USING (partition_key) LEFT JOIN cyclic USING (partition_key)
LEFT JOIN quarters USING (partition_key)
ORDER BY partition_key
