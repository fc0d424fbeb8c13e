-- telemetry_1m with the Apache-2 edition, which has no continuous aggregates (docs/operations.md, "Apache
-- rollups"): the closed buckets from the store telemetry_rollup.store_1m below the watermark, UNION ALL the open ones
-- computed at query time from the raw readings. Same name and columns as the community edition's continuous aggregate.
-- The filters on the watermark are index conditions on the store's (device_id, bucket) and on the source's: a query
-- for one device and a bucket range reads its stored buckets by index and only the rows since the watermark.
CREATE OR REPLACE VIEW public.telemetry_1m AS
SELECT s.bucket, s.device_id, s.metric, s.count, s.sum, s.min, s.max
FROM telemetry_rollup.store_1m s
WHERE s.bucket < telemetry_rollup.watermark()
UNION ALL
-- Only numbers within ingest's bound ±1e288 (MAX_MAGNITUDE, telemetry/ingest/validation.py): a bigger one, written
-- by SQL, could overflow a sum. The CASE tests the type before the cast, so the casts only see numbers.
SELECT
    public.time_bucket(INTERVAL '1 minute', t.time) AS bucket,
    t.device_id,
    m.key AS metric,
    count(*) AS count,
    sum(m.value::double precision) AS sum,
    min(m.value::double precision) AS min,
    max(m.value::double precision) AS max
FROM public.telemetry t
CROSS JOIN LATERAL jsonb_each(t.metrics) AS m
WHERE CASE WHEN jsonb_typeof(m.value) = 'number' THEN abs(m.value::numeric) <= 1e288 ELSE false END
    AND t.time >= telemetry_rollup.watermark()
GROUP BY 1, 2, 3;
