-- The encoded CRM events the deep models read: one row per event of the run's customers, in
-- process order. A quotation is the record when there is one, else its opportunity.
-- $1: the newest process date to read (the end of the training or scoring window).
SELECT e.partition_key,
       coalesce(e.quotation_id, e.opportunity_id) AS record_id,
       e.process_date,
       {columns}
FROM crm_events AS e
JOIN run_customers USING (partition_key)
WHERE e.process_date <= $1
ORDER BY e.partition_key, e.process_date, e.opportunity_id, e.quotation_id NULLS FIRST
