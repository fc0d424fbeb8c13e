CREATE OR REPLACE FUNCTION public.rule_evaluation_state_refresh()
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    -- Concurrent rule edits refresh one after the other. This lock conflicts with itself (and with writes to the
    -- row), not with the readers: ingest never waits. It is held until commit, and in READ COMMITTED the next
    -- statement takes a new snapshot (this function is VOLATILE), so it sees every rule edit committed by a
    -- transaction that held the lock before: the last transaction to commit leaves the values of all rules.
    LOCK TABLE public.rule_evaluation_state IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO public.rule_evaluation_state AS s (singleton, prefilter, auto_resolving, with_duration, refreshed_at)
    VALUES (true, public.rules_prefilter(), public.rules_auto_resolving(), public.rules_with_duration(),
        clock_timestamp())
    ON CONFLICT (singleton) DO UPDATE
    SET prefilter = excluded.prefilter, auto_resolving = excluded.auto_resolving,
        with_duration = excluded.with_duration, refreshed_at = excluded.refreshed_at;
END;
$$;

COMMENT ON FUNCTION public.rule_evaluation_state_refresh() IS
    'Recomputes rule_evaluation_state from the rules, serialising concurrent rule edits.';
