-- Why a run customer has no detector input: too little history, or no lag features at all.
SELECT r.partition_key,
       CASE WHEN h.partition_key IS NULL OR NOT EXISTS (
                SELECT 1 FROM lag_features AS l WHERE l.partition_key = r.partition_key AND NOT l.is_warmup)
            THEN 'no day after the lag features'' warm-up: materialize customer_series and lag_features'
            ELSE printf('too little history: %.1f transactions a month on average, below the minimum '
                        '(customer_history.sufficient_history is false)', h.mean_monthly_transactions)
       END AS reason
FROM run_customers AS r LEFT JOIN customer_history AS h USING (partition_key)
ORDER BY 1
