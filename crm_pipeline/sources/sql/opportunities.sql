-- Opportunities: the first step of the CRM process.
SELECT
    o.opportunity_id      AS opportunity_id,
    o.account_id          AS customer_id,
    o.process_date        AS event_date,
    o.buy_interest        AS buy_interest,
    o.trading_currency    AS trading_currency,
    o.cancellation_detail AS cancellation_detail
FROM opportunities AS o
