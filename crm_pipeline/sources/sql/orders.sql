-- Customer orders placed from quotations.
SELECT
    c.order_id            AS order_id,
    c.quotation_id        AS quotation_id,
    c.account_id          AS customer_id,
    c.order_date          AS event_date,
    c.amount              AS amount,
    c.trading_currency    AS trading_currency,
    c.cancellation_detail AS cancellation_detail
FROM customer_orders AS c
