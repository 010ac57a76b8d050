-- The demo's ground truth, read in every tenant database like any extraction: the days on
-- which an anomaly was planted for a customer, in its transactions or in its CRM records
-- (scope 'crm_events': what the deep detectors score).
SELECT DISTINCT account_id AS customer_id, event_date, kind,
       CASE WHEN entity = 'transactions' THEN 'transactions' ELSE 'crm_events' END AS scope
FROM anomaly_labels
