-- The two pieces of rule evaluation that the telemetry_evaluate_rules trigger and a DBA's ad-hoc queries share.
-- Both are IMMUTABLE single-expression SQL functions, so the planner inlines them: no call overhead per reading.

CREATE FUNCTION public.rule_matches(operator text, value jsonb, threshold jsonb)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- Values of different JSON types (or a missing value, NULL) never match. Same-typed jsonb values compare by
    -- their JSON value: numbers numerically (21 = 21.0), strings and booleans by equality; the rules_threshold_type
    -- CHECK keeps gt/lt/gte/lte to numbers. Comparing jsonb directly avoids casting every reading to numeric.
    SELECT coalesce(jsonb_typeof(value) = jsonb_typeof(threshold), false)
        AND CASE operator
            WHEN 'gt' THEN value > threshold
            WHEN 'lt' THEN value < threshold
            WHEN 'gte' THEN value >= threshold
            WHEN 'lte' THEN value <= threshold
            WHEN 'eq' THEN value = threshold
            WHEN 'neq' THEN value <> threshold
            ELSE false
        END
$$;

COMMENT ON FUNCTION public.rule_matches(text, jsonb, jsonb) IS
    'True when a reading''s metric value matches a rule (operator, threshold): same JSON type, then compared as JSON '
    '(numbers numerically). False for a missing value or a different type.';

CREATE FUNCTION public.rule_render_message(
    template text, device_name text, metric text, value jsonb, operator text, threshold jsonb
)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- #>> '{}' is a JSON scalar as text: strings without their quotes, numbers and booleans as written.
    SELECT replace(replace(replace(replace(replace(template,
        '{device_name}', device_name),
        '{metric}', metric),
        '{value}', coalesce(value #>> '{}', 'null')),
        '{operator}', CASE operator
            WHEN 'gt' THEN '>' WHEN 'lt' THEN '<' WHEN 'gte' THEN '>=' WHEN 'lte' THEN '<='
            WHEN 'eq' THEN '=' WHEN 'neq' THEN '!=' ELSE operator
        END),
        '{threshold}', threshold #>> '{}')
$$;

COMMENT ON FUNCTION public.rule_render_message(text, text, text, jsonb, text, jsonb) IS
    'An event message: the rule''s message_template with {device_name}, {metric}, {value}, {operator} (as a symbol, '
    'e.g. >=) and {threshold} replaced.';

CREATE FUNCTION public.rules_prefilter()
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
