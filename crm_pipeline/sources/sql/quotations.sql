-- Quotations made for opportunities.
SELECT
    q.quotation_id        AS quotation_id,
    q.opportunity_id      AS opportunity_id,
    q.account_id          AS customer_id,
    q.quotation_date      AS event_date,
    q.buy_interest        AS buy_interest,
    q.subtotal            AS subtotal,
    q.trading_currency    AS trading_currency,
    q.cancellation_detail AS cancellation_detail
FROM quotations AS q
