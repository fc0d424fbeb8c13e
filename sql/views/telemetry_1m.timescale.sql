-- telemetry_1m with TimescaleDB's community (TSL) edition: per-device, per-metric rollups of the numeric top-level
-- metrics as hierarchical continuous aggregates — 1 minute over raw, 1 hour over 1 minute (telemetry_1h), 1 day over
-- 1 hour (telemetry_1d). Each stores count, sum, min and max, never avg: a coarser bucket is then exact
-- (avg = Σsum / Σcount, min of mins, max of maxes).
-- Real-time (materialized_only = false): the unmaterialized tail is computed from the level below at query
-- time. Created WITH NO DATA: refreshing can't run in a transaction; refresh policies are applied by
-- `manage.py apply_timescale_policies`. A continuous aggregate can't be replaced: a change is a migration that
-- drops and re-creates the three levels (sql/README.md). The Apache edition's view: telemetry_1m.apache.sql.

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
