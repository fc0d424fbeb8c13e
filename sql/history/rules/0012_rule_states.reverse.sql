ALTER TABLE public.rule_evaluation_state DROP COLUMN with_duration;
DROP FUNCTION IF EXISTS public.rules_with_duration();
DROP FUNCTION IF EXISTS public.utc_iso8601(timestamptz);
-- The refresh function as before this migration (sql/functions/rule_evaluation_state_refresh.sql then).
CREATE OR REPLACE FUNCTION public.rule_evaluation_state_refresh()
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    LOCK TABLE public.rule_evaluation_state IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO public.rule_evaluation_state AS s (singleton, prefilter, auto_resolving, refreshed_at)
    VALUES (true, public.rules_prefilter(), public.rules_auto_resolving(), clock_timestamp())
    ON CONFLICT (singleton) DO UPDATE
    SET prefilter = excluded.prefilter, auto_resolving = excluded.auto_resolving,
        refreshed_at = excluded.refreshed_at;
END;
$$;
