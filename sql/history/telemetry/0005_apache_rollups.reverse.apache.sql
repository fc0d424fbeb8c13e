-- Undoes 0005_apache_rollups.apache.sql: the rollups go, and telemetry_1m/1h/1d are again the plain views over raw
-- readings of 0002_aggregates.apache.sql (repeated here: a file run by a migration is never edited).
DROP TRIGGER IF EXISTS telemetry_rollup_invalidate ON public.telemetry;
DROP TRIGGER IF EXISTS devices_forget_rollups ON public.devices;
DROP VIEW IF EXISTS public.telemetry_1d;
DROP VIEW IF EXISTS public.telemetry_1h;
DROP VIEW IF EXISTS public.telemetry_1m;
DROP SCHEMA IF EXISTS telemetry_rollup CASCADE;

CREATE VIEW telemetry_1m AS
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
GROUP BY 1, 2, 3;

CREATE VIEW telemetry_1h AS
SELECT
    time_bucket(INTERVAL '1 hour', t.time) AS bucket,
    t.device_id,
    m.key AS metric,
    count(*) AS count,
    sum(m.value::double precision) AS sum,
    min(m.value::double precision) AS min,
    max(m.value::double precision) AS max
FROM telemetry t
CROSS JOIN LATERAL jsonb_each(t.metrics) AS m
WHERE jsonb_typeof(m.value) = 'number'
GROUP BY 1, 2, 3;

CREATE VIEW telemetry_1d AS
SELECT
    time_bucket(INTERVAL '1 day', t.time) AS bucket,
    t.device_id,
    m.key AS metric,
    count(*) AS count,
    sum(m.value::double precision) AS sum,
    min(m.value::double precision) AS min,
    max(m.value::double precision) AS max
FROM telemetry t
CROSS JOIN LATERAL jsonb_each(t.metrics) AS m
WHERE jsonb_typeof(m.value) = 'number'
GROUP BY 1, 2, 3;
