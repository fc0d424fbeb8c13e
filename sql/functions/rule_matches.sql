CREATE OR REPLACE FUNCTION public.rule_matches(operator text, value jsonb, threshold jsonb)
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
