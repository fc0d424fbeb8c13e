-- Undoes 0002_aggregates.apache.sql.
DROP VIEW IF EXISTS telemetry_1d;
DROP VIEW IF EXISTS telemetry_1h;
DROP VIEW IF EXISTS telemetry_1m;
