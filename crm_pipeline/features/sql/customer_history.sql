-- How much history each of the run's customers has, and whether it is enough for detectors.
-- Parameter 1: the minimum mean number of transactions per month (the paper used 100).
SELECT s.partition_key,
       min(s.period_start)                                   AS first_month,
       max(s.period_start)                                   AS last_month,
       count(*)                                              AS months,
       sum(s.transactions_in + s.transactions_out)           AS transactions,
       avg(s.transactions_in + s.transactions_out)           AS mean_monthly_transactions,
       avg(s.transactions_in + s.transactions_out) >= ?::DOUBLE AS sufficient_history
FROM customer_series AS s JOIN run_customers USING (partition_key)
WHERE s.grain = 'month'
GROUP BY s.partition_key
