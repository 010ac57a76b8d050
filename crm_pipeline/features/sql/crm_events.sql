-- Encoded CRM events of the run's customers: opportunities -> quotations -> orders, one row per
-- quotation (or per opportunity that has none), with the CRM paper's encoded columns.
-- Codes: 0 = none (NULL), -1 = unseen (a category not in crm_encodings), learned codes from 1.
-- Buy interest is ordinal (buy_interest_levels); subtotals are converted with the rate valid on
-- the quotation's date (fx_rates_in_use: the loaded rates, demo rates for currencies without any).
WITH k AS (
    SELECT c.partition_key, c.source_db, c.customer_id
    FROM customer_keys AS c JOIN run_customers USING (partition_key)
),
enc AS (SELECT column_name, category, code FROM crm_encodings),
-- A quotation's first order (earliest date, then smallest id): every order column of an event
-- comes from that one order, never a mix of several.
ord AS (
    SELECT source_db, quotation_id, order_id, event_date AS order_date, cancellation_detail
    FROM raw.orders
    QUALIFY row_number() OVER (PARTITION BY source_db, quotation_id ORDER BY event_date, order_id) = 1
),
events AS (
    SELECT k.partition_key, o.source_db, o.opportunity_id, q.quotation_id, ord.order_id,
           o.event_date AS opportunity_date, coalesce(q.event_date, o.event_date) AS process_date,
           ord.order_date, o.buy_interest AS opportunity_interest, q.buy_interest AS quotation_interest,
           q.subtotal, coalesce(q.trading_currency, o.trading_currency) AS trading_currency,
           o.cancellation_detail AS opportunity_cancel, q.cancellation_detail AS quotation_cancel,
           ord.cancellation_detail AS order_cancel
    FROM raw.opportunities AS o
    JOIN k USING (source_db, customer_id)
    LEFT JOIN raw.quotations AS q
           ON q.source_db = o.source_db AND q.opportunity_id = o.opportunity_id
    LEFT JOIN ord ON ord.source_db = q.source_db AND ord.quotation_id = q.quotation_id
)
SELECT e.partition_key, e.source_db, e.opportunity_id, e.quotation_id, e.order_id,
       e.process_date, date_diff('day', DATE '1970-01-01', e.process_date) AS process_day,
       e.opportunity_date, e.order_date,
       CASE WHEN e.opportunity_interest IS NULL THEN 0 ELSE coalesce(oi.level, -1) END
           AS opportunity_buy_interest,
       CASE WHEN e.quotation_interest IS NULL THEN 0 ELSE coalesce(qi.level, -1) END
           AS quotation_buy_interest,
       e.subtotal AS quotation_subtotal,
       (e.subtotal * fx.rate_to_eur)::DOUBLE AS quotation_subtotal_eur,
       CASE WHEN e.trading_currency IS NULL THEN 0 ELSE coalesce(cur.code, -1) END
           AS trading_currency_code,
       CASE WHEN e.opportunity_cancel IS NULL THEN 0 ELSE coalesce(oc.code, -1) END
           AS opportunity_cancellation_code,
       CASE WHEN e.quotation_cancel IS NULL THEN 0 ELSE coalesce(qc.code, -1) END
           AS quotation_cancellation_code,
       CASE WHEN e.order_cancel IS NULL THEN 0 ELSE coalesce(rc.code, -1) END
           AS order_cancellation_code,
       e.trading_currency
FROM events AS e
LEFT JOIN buy_interest_levels AS oi ON oi.label = lower(trim(e.opportunity_interest))
LEFT JOIN buy_interest_levels AS qi ON qi.label = lower(trim(e.quotation_interest))
-- the currency's rate valid on the quotation's date: the latest valid_from on or before it
ASOF LEFT JOIN fx_rates_in_use AS fx ON fx.currency = e.trading_currency AND e.process_date >= fx.valid_from
LEFT JOIN enc AS cur ON cur.column_name = 'trading_currency' AND cur.category = e.trading_currency
LEFT JOIN enc AS oc ON oc.column_name = 'opportunity_cancellation' AND oc.category = e.opportunity_cancel
LEFT JOIN enc AS qc ON qc.column_name = 'quotation_cancellation' AND qc.category = e.quotation_cancel
LEFT JOIN enc AS rc ON rc.column_name = 'order_cancellation' AND rc.category = e.order_cancel
