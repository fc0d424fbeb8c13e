DROP TABLE timescaledb_edition;
