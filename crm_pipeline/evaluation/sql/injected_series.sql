-- One copy of a customer's series per planned injection, keyed '<customer>#<measure>#<n>', with
-- the injected amount added to its day and to the week, month and quarter holding that day.
-- Expects base_series (customer_series rows) and injections(partition_key, measure, variant,
-- day, delta).
SELECT i.partition_key || '#' || i.measure || '#' || i.variant AS partition_key,
       s.grain, s.period_start,
       s.amount_in + CASE WHEN i.measure = 'amount_in' AND hit THEN i.delta ELSE 0 END AS amount_in,
       s.amount_out + CASE WHEN i.measure = 'amount_out' AND hit THEN i.delta ELSE 0 END AS amount_out,
       s.counterparts_in + CASE WHEN i.measure = 'counterparts_in' AND hit THEN i.delta ELSE 0 END
           AS counterparts_in,
       s.counterparts_out + CASE WHEN i.measure = 'counterparts_out' AND hit THEN i.delta ELSE 0 END
           AS counterparts_out,
       s.transactions_in, s.transactions_out
FROM injections AS i
JOIN base_series AS s USING (partition_key),
LATERAL (SELECT s.period_start = date_trunc(s.grain, i.day)::DATE AS hit)
