-- The watermark as the views read it. Declared IMMUTABLE (it is not) so that the planner folds it into a constant
-- when it plans a query: TimescaleDB then excludes at plan time every chunk the query can't need (the raw and
-- 1-minute tails touch one or two chunks, not all 90), and the estimates stay small (no JIT compilation, which
-- cost 1.5-3 s per query with a runtime-only watermark). Safe because a view is exact with any value at or below
-- the current watermark (the stores are complete below it, raw data above it): a plan kept from earlier (a
-- prepared statement) holds an older value and only reads more raw readings.
-- SECURITY DEFINER: the views call it with the rights of whoever queries them, and a reader such as the read-only
-- role (iothub/readonly_role.py) has no rights on the telemetry_rollup schema; it still folds at plan time.
CREATE OR REPLACE FUNCTION telemetry_rollup.watermark()
RETURNS timestamptz
LANGUAGE sql IMMUTABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT st.watermark FROM telemetry_rollup.state st
$$;

COMMENT ON FUNCTION telemetry_rollup.watermark() IS
    'telemetry_rollup.state.watermark, folded into a constant at plan time by the views (IMMUTABLE on purpose).';
