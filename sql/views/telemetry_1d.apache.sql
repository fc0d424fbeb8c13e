-- telemetry_1d with the Apache-2 edition, which has no continuous aggregates (docs/operations.md, "Apache
-- rollups"): the closed buckets from the store telemetry_rollup.store_1d below the watermark, UNION ALL the open ones
-- computed at query time from telemetry_1h. Same name and columns as the community edition's continuous aggregate.
-- The filters on the watermark are index conditions on the store's (device_id, bucket) and on the source's: a query
-- for one device and a bucket range reads its stored buckets by index and only the rows since the watermark.
CREATE OR REPLACE VIEW public.telemetry_1d AS
SELECT s.bucket, s.device_id, s.metric, s.count, s.sum, s.min, s.max
FROM telemetry_rollup.store_1d s
WHERE s.bucket < public.time_bucket(INTERVAL '1 day', telemetry_rollup.watermark())
UNION ALL
SELECT
    public.time_bucket(INTERVAL '1 day', a.bucket) AS bucket,
    a.device_id,
    a.metric,
    sum(a.count)::bigint AS count,
    sum(a.sum) AS sum,
    min(a.min) AS min,
    max(a.max) AS max
FROM public.telemetry_1h a
WHERE a.bucket >= public.time_bucket(INTERVAL '1 day', telemetry_rollup.watermark())
GROUP BY 1, 2, 3;
