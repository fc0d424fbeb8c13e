-- Per device, the disjoint ranges of whole buckets of `width` covering the invalidated readings
-- [lows[i], highs[i]] of devices[i], clipped to [since, before).
CREATE OR REPLACE FUNCTION telemetry_rollup.bucket_spans(
    width interval, devices uuid[], lows timestamptz[], highs timestamptz[], since timestamptz, before timestamptz
)
RETURNS TABLE (device_id uuid, low timestamptz, high timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT s.device_id, lower(s.span), upper(s.span)
    FROM (
        SELECT i.device_id, unnest(range_agg(
            tstzrange(public.time_bucket(width, i.low), public.time_bucket(width, i.high) + width)
            * tstzrange(since, before))) AS span
        FROM unnest(devices, lows, highs) AS i(device_id, low, high)
        GROUP BY i.device_id
    ) s
$$;

COMMENT ON FUNCTION telemetry_rollup.bucket_spans(interval, uuid[], timestamptz[], timestamptz[], timestamptz,
    timestamptz) IS
    'Used by telemetry_rollup.refresh(): per device, the merged ranges of whole buckets to recompute.';
