-- Customers (accounts) of one tenant database.
SELECT
    a.account_id   AS customer_id,
    a.account_name AS customer_name,
    a.segment      AS segment,
    a.country      AS country,
    a.created_on   AS created_date
FROM accounts AS a
