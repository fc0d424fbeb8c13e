-- Nothing on a build with TimescaleDB's TSL features: telemetry_1m/1h/1d are continuous aggregates there
-- (0002_aggregates.timescale.sql), kept up to date by their refresh policies. The Apache build gets materialized
-- rollups of its own: 0005_apache_rollups.apache.sql.
SELECT 1;
