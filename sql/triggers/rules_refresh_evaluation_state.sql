CREATE OR REPLACE FUNCTION public.rules_refresh_evaluation_state()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM public.rule_evaluation_state_refresh();
    -- Set here rather than in rule_evaluation_state_refresh(), whose live text a fresh database also runs at
    -- migration rules/0012, before the column exists. Still under the lock the refresh took: the last
    -- transaction to commit leaves the value of all rules.
    UPDATE public.rule_evaluation_state SET no_data = public.rules_with_no_data();
    RETURN NULL;
END;
$$;

-- Every way rules change, cascades from deleted devices included; statement level: once per statement.
-- Not a pgtrigger trigger: pgtrigger.ignore() (used by backfills) must never leave this row stale.
CREATE OR REPLACE TRIGGER rules_refresh_evaluation_state
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.rules
FOR EACH STATEMENT EXECUTE FUNCTION public.rules_refresh_evaluation_state();
