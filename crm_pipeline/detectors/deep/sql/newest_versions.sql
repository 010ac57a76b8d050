-- Each wanted customer's newest registered version of one model that holds it.
-- $1: the customers' partition keys; $2: the model.
WITH held AS (
    SELECT unnest(customer_keys) AS partition_key, version, created_at
    FROM model_registry WHERE model = $2
)
SELECT partition_key, version
FROM held SEMI JOIN (SELECT unnest($1::VARCHAR[]) AS partition_key) AS wanted USING (partition_key)
QUALIFY row_number() OVER (PARTITION BY partition_key ORDER BY created_at DESC, version DESC) = 1
