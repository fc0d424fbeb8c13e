-- The invalidation trigger: AFTER INSERT, FOR EACH STATEMENT, one INSERT … SELECT over the transition table. It
-- writes only when a reading is older than the threshold (late data); on the normal path it reads one row and
-- writes nothing. Not a pgtrigger trigger: it exists on the Apache build only, and pgtrigger.ignore() (used for
-- backfills of the rule trigger) must not make a backfill invisible to the rollups.
CREATE OR REPLACE FUNCTION telemetry_rollup.log_invalidations()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- One row per device and UTC day: a refresh recomputes the buckets between a row's oldest and newest reading,
    -- so one statement's readings weeks apart must not make it recompute the weeks between them.
    -- Under READ COMMITTED this statement's snapshot is taken now, after the INSERT got its xid, which is what the
    -- refresh's fence relies on. Under REPEATABLE READ or SERIALIZABLE it is the transaction's, maybe taken before
    -- the threshold moved and before any xid: the fence can't account for such a writer, so it logs every reading.
    INSERT INTO telemetry_rollup.invalidations (device_id, low, high)
    SELECT n.device_id, min(n.time), max(n.time)
    FROM new_rows n
    WHERE n.time < (SELECT st.threshold FROM telemetry_rollup.state st)
        OR current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted')
    GROUP BY n.device_id, public.time_bucket(INTERVAL '1 day', n.time);
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION telemetry_rollup.log_invalidations() IS
    'Trigger telemetry_rollup_invalidate: logs (device, min(time), max(time)) per UTC day of the readings an INSERT '
    'wrote below telemetry_rollup.state.threshold (all of them under REPEATABLE READ or SERIALIZABLE), for the next '
    'telemetry_rollup.refresh() to recompute.';

CREATE OR REPLACE TRIGGER telemetry_rollup_invalidate
AFTER INSERT ON public.telemetry
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION telemetry_rollup.log_invalidations();
