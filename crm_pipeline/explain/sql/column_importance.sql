-- Mean |SHAP| per input column over the explained events of the run's customers (a column's
-- share of an event = the sum of its |SHAP| over the look-back steps), per detector.
SELECT detector, column_name, avg(total) AS mean_abs_shap, count(*) AS events
FROM (
    SELECT detector, partition_key, record_id, column_name, sum(abs(shap_value)) AS total
    FROM shap_values JOIN run_customers USING (partition_key)
    GROUP BY ALL
)
GROUP BY ALL
ORDER BY detector, mean_abs_shap DESC
