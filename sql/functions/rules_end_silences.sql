CREATE OR REPLACE FUNCTION public.rules_end_silences(rule_ids bigint[], device_ids uuid[], reading_times timestamptz[])
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    ended integer;
BEGIN
    -- Each (rule_ids[i], device_ids[i]) had a reading at reading_times[i] (of the rule's metric, or any reading);
    -- a reading newer than the pair's open silence (its silent_alarm_at) ends it and resolves the silence's
    -- unresolved events. Called by the rule trigger with the statement's readings, and by rules_evaluate_no_data()
    -- for readings the trigger did not see. The state rows are locked in (rule_id, device_id) order before any
    -- event, the order every writer of rule_states takes, and the condition is checked again on the locked row:
    -- of two transactions ending the same silence one does it, the other finds it ended.
    WITH locked AS (
        SELECT s.rule_id, s.device_id, c.reading_time
        FROM public.rule_states s
        JOIN unnest(rule_ids, device_ids, reading_times) c(rule_id, device_id, reading_time)
            ON s.rule_id = c.rule_id AND s.device_id = c.device_id
        WHERE s.silent_alarm_at < c.reading_time
        ORDER BY s.rule_id, s.device_id
        FOR UPDATE OF s
    ),
    cleared AS (
        UPDATE public.rule_states s
        SET silent_since = NULL, silent_alarm_at = NULL, changed_at = greatest(s.changed_at, l.reading_time)
        FROM locked l
        WHERE s.rule_id = l.rule_id AND s.device_id = l.device_id
        RETURNING s.rule_id, s.device_id, l.reading_time
    ),
    resolved AS (
        UPDATE public.events e
        SET status = 'resolved', resolved_at = now(),
            resolved_note = format('Resolved automatically: a reading arrived at %s.',
                public.utc_iso8601(c.reading_time))
        FROM cleared c
        WHERE e.rule_id = c.rule_id AND e.device_id = c.device_id AND e.status IN ('open', 'acknowledged')
            AND e.triggered_at < c.reading_time
        RETURNING 1
    )
    SELECT count(*) INTO ended FROM cleared;
    RETURN ended;
END;
$$;

COMMENT ON FUNCTION public.rules_end_silences(bigint[], uuid[], timestamptz[]) IS
    'Ends the open silences of no-data rules that a newer reading broke (rule_states.silent_alarm_at before the '
    'reading''s time) and resolves their events; returns how many silences it ended.';
