-- Undoes 0002_aggregates.timescale.sql: the coarsest first, each depends on the one below.
DROP MATERIALIZED VIEW IF EXISTS telemetry_1d;
DROP MATERIALIZED VIEW IF EXISTS telemetry_1h;
DROP MATERIALIZED VIEW IF EXISTS telemetry_1m;
