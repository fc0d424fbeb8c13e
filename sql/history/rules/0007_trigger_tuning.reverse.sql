-- Undoes 0007_trigger_tuning.sql: rules_prefilter() as 0002_evaluation_functions.sql defined it (lax jsonpath),
-- and the default fillfactor for events.

CREATE OR REPLACE FUNCTION public.rules_prefilter()
RETURNS jsonpath
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    -- PL/pgSQL, not SQL, so the query's plan is cached for the session: the trigger calls this once per INSERT.
    -- Per metric: the lowest gt/gte threshold, the highest lt/lte one, every eq and neq value. A reading for which
    -- this predicate is not true matches no rule, so the trigger compares only the few remaining readings with
    -- each rule. jsonpath compares like rule_matches: numbers numerically, values of different types never.
    RETURN (
    SELECT string_agg(condition, ' || ' ORDER BY condition)::jsonpath
    FROM (
        SELECT format('$.%s >= %s', to_json(metric::text), min(threshold::numeric)) AS condition
        FROM public.rules
        WHERE enabled AND operator IN ('gt', 'gte')
        GROUP BY metric
        UNION ALL
        SELECT format('$.%s <= %s', to_json(metric::text), max(threshold::numeric))
        FROM public.rules
        WHERE enabled AND operator IN ('lt', 'lte')
        GROUP BY metric
        UNION
        SELECT format('$.%s %s %s', to_json(metric::text), CASE operator WHEN 'eq' THEN '==' ELSE '!=' END, threshold)
        FROM public.rules
        WHERE enabled AND operator IN ('eq', 'neq')
    ) conditions
    );
END;
$$;

COMMENT ON FUNCTION public.rules_prefilter() IS
    'A jsonpath predicate true for every telemetry.metrics object that might match an enabled rule (NULL when no '
    'rule is enabled): metrics @@ rules_prefilter() dismisses most readings cheaply before the exact comparison.';

ALTER TABLE public.events RESET (fillfactor);
