-- The invalidation triggers: AFTER INSERT and AFTER UPDATE (a reading merged into a stored one, or edited by hand),
-- FOR EACH STATEMENT, one INSERT … SELECT over the transition tables. They write only when a reading is older than
-- the threshold (late data); on the normal path they read one row and write nothing. Ingest's INSERT … ON CONFLICT
-- DO UPDATE fires the UPDATE one too, with no rows when nothing merged: it then reads nothing. Not pgtrigger
-- triggers: they exist on the Apache build only, and pgtrigger.ignore() (used for backfills of the rule trigger)
-- must not make a backfill invisible to the rollups.
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
    IF TG_OP = 'INSERT' THEN
        INSERT INTO telemetry_rollup.invalidations (device_id, low, high)
        SELECT n.device_id, min(n.time), max(n.time)
        FROM new_rows n
        WHERE n.time < (SELECT st.threshold FROM telemetry_rollup.state st)
            OR current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted')
        GROUP BY n.device_id, public.time_bucket(INTERVAL '1 day', n.time);
    ELSE
        -- An UPDATE changes the buckets of its new rows and, when it moved a reading to another time or device,
        -- those the old row left (an old row whose key no new row has).
        INSERT INTO telemetry_rollup.invalidations (device_id, low, high)
        SELECT n.device_id, min(n.time), max(n.time)
        FROM (
            SELECT n.device_id, n.time FROM new_rows n
            UNION ALL
            SELECT o.device_id, o.time FROM old_rows o
            WHERE NOT EXISTS (SELECT FROM new_rows n WHERE n.device_id = o.device_id AND n.time = o.time)
        ) n
        WHERE n.time < (SELECT st.threshold FROM telemetry_rollup.state st)
            OR current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted')
        GROUP BY n.device_id, public.time_bucket(INTERVAL '1 day', n.time);
    END IF;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION telemetry_rollup.log_invalidations() IS
    'Triggers telemetry_rollup_invalidate and telemetry_rollup_invalidate_on_update: logs (device, min(time), '
    'max(time)) per UTC day of the readings an INSERT or UPDATE wrote (or an UPDATE moved away from) below '
    'telemetry_rollup.state.threshold (all of them under REPEATABLE READ or SERIALIZABLE), for the next '
    'telemetry_rollup.refresh() to recompute.';

CREATE OR REPLACE TRIGGER telemetry_rollup_invalidate
AFTER INSERT ON public.telemetry
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION telemetry_rollup.log_invalidations();

CREATE OR REPLACE TRIGGER telemetry_rollup_invalidate_on_update
AFTER UPDATE ON public.telemetry
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION telemetry_rollup.log_invalidations();
