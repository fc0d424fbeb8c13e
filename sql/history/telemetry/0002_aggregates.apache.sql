-- The Apache-2 build has no continuous aggregates: the same three names and columns as plain views, so API and
-- ORM code are identical on both editions (see 0002_aggregates.timescale.sql for the TSL version).
-- Each view reads raw data directly rather than the view below it: TimescaleDB rewrites
-- `time_bucket(width, time) >= A` into `time >= A` only when time_bucket's argument is the hypertable's time
-- column, so a `device_id = X AND bucket >= A AND bucket < B` filter reaches the primary key (device_id, time)
-- and excludes chunks. Nesting time_bucket over time_bucket would lose that and scan every chunk of the device.
-- jsonb_typeof filters before any cast: the aggregates' casts only see numbers.

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
