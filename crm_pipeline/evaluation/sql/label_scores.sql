-- Each detector's flags in anomaly_scores against the planted labels (planted_label_rows:
-- source_db, customer_id, event_date). A customer-day counts once, flagged when the detector
-- flagged it on any measure. Only scored days count; labels outside them are reported apart.
WITH labels AS (
    SELECT DISTINCT k.partition_key, l.event_date::DATE AS day
    FROM planted_label_rows AS l JOIN customer_keys AS k USING (source_db, customer_id)
),
scored AS (
    SELECT partition_key, detector, day, bool_or(flag) AS flag
    FROM anomaly_scores GROUP BY ALL
),
marked AS (
    SELECT s.*, l.day IS NOT NULL AS labelled
    FROM scored AS s LEFT JOIN labels AS l USING (partition_key, day)
)
SELECT detector,
       count(*) FILTER (WHERE flag AND labelled)         AS tp,
       count(*) FILTER (WHERE flag AND NOT labelled)     AS fp,
       count(*) FILTER (WHERE NOT flag AND labelled)     AS fn,
       count(*) FILTER (WHERE NOT flag AND NOT labelled) AS tn,
       (SELECT count(*) FROM labels)                     AS labels_planted
FROM marked
GROUP BY detector
ORDER BY detector
