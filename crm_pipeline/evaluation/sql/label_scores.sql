-- Each detector's flags in anomaly_scores against the planted days (planted_days: partition_key,
-- day). A customer-day counts once, flagged when the detector flagged it on any measure. Only
-- scored days count; labels outside them are reported apart.
WITH labels AS (SELECT partition_key, day FROM planted_days),
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
