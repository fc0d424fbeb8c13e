CREATE OR REPLACE FUNCTION public.rule_render_message(
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
