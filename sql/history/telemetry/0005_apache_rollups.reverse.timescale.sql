-- Undoes 0005_apache_rollups.timescale.sql, which did nothing.
SELECT 1;
