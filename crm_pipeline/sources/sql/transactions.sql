-- Corporate transactions: one row per payment, incoming or outgoing.
SELECT
    t.transaction_id AS transaction_id,
    t.account_id     AS customer_id,
    t.booking_date   AS event_date,
    t.amount         AS amount,
    t.counterpart    AS counterpart,
    t.direction      AS direction
FROM transactions AS t
