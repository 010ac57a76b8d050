-- Each detector's flags in anomaly_scores against the planted days of its scope (planted_days:
-- partition_key, scope, day): the deep detectors' crm_events against the CRM labels, the
-- transaction measures against the transaction labels. A customer-day counts once, flagged when
-- the detector flagged it on any measure. Only scored days count; labels outside them are
-- reported apart (labels_planted: every label day of the scope).
WITH labels AS (SELECT DISTINCT partition_key, scope, day FROM planted_days),
planted AS (SELECT scope, count(*) AS labels_planted FROM labels GROUP BY scope),
scored AS (
    SELECT partition_key, detector,
           CASE WHEN measure = 'crm_events' THEN 'crm_events' ELSE 'transactions' END AS scope,
           day, bool_or(flag) AS flag
    FROM anomaly_scores GROUP BY ALL
),
marked AS (
    SELECT s.*, l.day IS NOT NULL AS labelled
    FROM scored AS s LEFT JOIN labels AS l USING (partition_key, scope, day)
)
SELECT m.detector, m.scope,
       count(*) FILTER (WHERE flag AND labelled)         AS tp,
       count(*) FILTER (WHERE flag AND NOT labelled)     AS fp,
       count(*) FILTER (WHERE NOT flag AND labelled)     AS fn,
       count(*) FILTER (WHERE NOT flag AND NOT labelled) AS tn,
       coalesce(any_value(p.labels_planted), 0)          AS labels_planted
FROM marked AS m LEFT JOIN planted AS p USING (scope)
GROUP BY m.detector, m.scope
ORDER BY m.detector
