-- telemetry_1h with the community (TSL) edition: a continuous aggregate over telemetry_1m (see
-- telemetry_1m.timescale.sql).
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
