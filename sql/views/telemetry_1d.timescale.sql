-- telemetry_1d with the community (TSL) edition: a continuous aggregate over telemetry_1h (see
-- telemetry_1m.timescale.sql).
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
