-- Per-device, per-metric rollups of the numeric top-level metrics, as continuous aggregates (TSL builds).
-- 1 minute over raw, 1 hour over 1 minute, 1 day over 1 hour. Each stores count, sum, min and max, never avg:
-- a coarser bucket is then exact (avg = Σsum / Σcount, min of mins, max of maxes).
-- Real-time (materialized_only = false): the unmaterialized tail is computed from the level below at query
-- time. Created WITH NO DATA: refreshing can't run in a transaction; refresh policies are applied by
-- `manage.py apply_timescale_policies`, not here.
-- The Apache build gets plain views with the same names and columns: 0002_aggregates.apache.sql.

-- jsonb_typeof filters before any cast: one non-numeric value would abort the whole refresh.
CREATE MATERIALIZED VIEW telemetry_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 minute', t.time) AS bucket,
    t.device_id,
    m.key AS metric,
    count(*) AS count,
    sum(m.value::double precision) AS sum,
    min(m.value::double precision) AS min,
    max(m.value::double precision) AS max
FROM telemetry t
CROSS JOIN LATERAL jsonb_each(t.metrics) AS m
WHERE jsonb_typeof(m.value) = 'number'
GROUP BY 1, 2, 3
WITH NO DATA;

-- GROUP BY by position: a bare `bucket` there would mean the input column, not the coarser bucket.
CREATE MATERIALIZED VIEW telemetry_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 hour', bucket) AS bucket,
    device_id,
    metric,
    sum(count)::bigint AS count,
    sum(sum) AS sum,
    min(min) AS min,
    max(max) AS max
FROM telemetry_1m
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW telemetry_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT
    time_bucket(INTERVAL '1 day', bucket) AS bucket,
    device_id,
    metric,
    sum(count)::bigint AS count,
    sum(sum) AS sum,
    min(min) AS min,
    max(max) AS max
FROM telemetry_1h
GROUP BY 1, 2, 3
WITH NO DATA;
