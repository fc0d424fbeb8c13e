-- The TimescaleDB edition this database was migrated under (iothub/edition.py). The migrations before this one
-- built the aggregates for the edition the library served then: continuous aggregates (timescale) or views over
-- the project's rollups (apache). The record says which, and the code reads it instead of asking the library; a
-- process whose library serves the other edition refuses to start.
CREATE TABLE timescaledb_edition (
    -- One row: the primary key admits only true.
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    edition text NOT NULL CHECK (edition IN ('timescale', 'apache')),
    recorded_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE timescaledb_edition IS
    'The TimescaleDB edition (timescale or apache) this database was migrated under; see iothub/edition.py.';

DO $$
DECLARE
    -- What the earlier migrations built, not what the library serves now: a database migrated before this record
    -- existed and started under another edition since is recorded as what it is, and stopped here.
    built text := CASE WHEN EXISTS (
            SELECT FROM timescaledb_information.continuous_aggregates
            WHERE view_schema = current_schema() AND view_name = 'telemetry_1m')
        THEN 'timescale' ELSE 'apache' END;
    served text := CASE current_setting('timescaledb.license', true) WHEN 'timescale' THEN 'timescale'
        ELSE 'apache' END;
BEGIN
    IF built <> served THEN
        RAISE EXCEPTION 'this database was migrated under TimescaleDB''s % edition, but the library serves the % edition',
            built, served
            USING HINT = 'Run with the edition the database was built for (timescaledb.license in postgresql.conf); '
                'databases are not converted between editions. A local development database can be recreated '
                'with make reset.';
    END IF;
    INSERT INTO timescaledb_edition (edition) VALUES (built);
END
$$;
