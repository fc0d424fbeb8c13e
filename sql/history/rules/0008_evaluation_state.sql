-- The enabled rules as the rule trigger needs them, kept in one row instead of computed for every INSERT.
--
-- telemetry_evaluate_rules used to call rules_prefilter() (aggregate the enabled rules, format and parse a jsonpath)
-- and look for enabled auto_resolve rules on every statement: ≈ 100 µs of server CPU, as much as the rest of a
-- single reading's INSERT. Rules change rarely and readings arrive all the time, so the two values are computed
-- when the rules change, by a statement-level trigger on rules, in the transaction that changes them.

CREATE TABLE public.rule_evaluation_state (
    -- At most one row: the key can only be true.
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    prefilter jsonpath,  -- rules_prefilter() of the enabled rules; NULL: no rule is enabled
    auto_resolving boolean NOT NULL,  -- an enabled rule has auto_resolve
    refreshed_at timestamptz NOT NULL
);

COMMENT ON TABLE public.rule_evaluation_state IS
    'What telemetry_evaluate_rules reads first (one row): rules_prefilter() and whether an enabled rule auto-resolves, '
    'recomputed by the trigger rules_refresh_evaluation_state whenever rules change.';

CREATE FUNCTION public.rules_auto_resolving()
RETURNS boolean
LANGUAGE sql
STABLE PARALLEL SAFE
AS $$
    SELECT EXISTS (SELECT FROM public.rules WHERE enabled AND auto_resolve)
$$;

COMMENT ON FUNCTION public.rules_auto_resolving() IS
    'Whether an enabled rule has auto_resolve: the second value of rule_evaluation_state.';

CREATE FUNCTION public.rule_evaluation_state_refresh()
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    -- Concurrent rule edits refresh one after the other. This lock conflicts with itself (and with writes to the
    -- row), not with the readers: ingest never waits. It is held until commit, and in READ COMMITTED the next
    -- statement takes a new snapshot (this function is VOLATILE), so it sees every rule edit committed by a
    -- transaction that held the lock before: the last transaction to commit leaves the values of all rules.
    LOCK TABLE public.rule_evaluation_state IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO public.rule_evaluation_state AS s (singleton, prefilter, auto_resolving, refreshed_at)
    VALUES (true, public.rules_prefilter(), public.rules_auto_resolving(), clock_timestamp())
    ON CONFLICT (singleton) DO UPDATE
    SET prefilter = excluded.prefilter, auto_resolving = excluded.auto_resolving,
        refreshed_at = excluded.refreshed_at;
END;
$$;

COMMENT ON FUNCTION public.rule_evaluation_state_refresh() IS
    'Recomputes rule_evaluation_state from the rules, serialising concurrent rule edits.';

CREATE FUNCTION public.rules_refresh_evaluation_state()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM public.rule_evaluation_state_refresh();
    RETURN NULL;
END;
$$;

-- Every way rules change, cascades from deleted devices included; statement level: once per statement.
-- Not a pgtrigger trigger: pgtrigger.ignore() (used by backfills) must never leave this row stale.
CREATE TRIGGER rules_refresh_evaluation_state
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.rules
FOR EACH STATEMENT EXECUTE FUNCTION public.rules_refresh_evaluation_state();

SELECT public.rule_evaluation_state_refresh();
