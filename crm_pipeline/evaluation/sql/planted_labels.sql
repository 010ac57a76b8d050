-- The demo's ground truth, read in every tenant database like any extraction: the days on
-- which an anomaly was planted in a customer's transactions.
SELECT DISTINCT account_id AS customer_id, event_date, kind
FROM anomaly_labels
WHERE entity = 'transactions'
