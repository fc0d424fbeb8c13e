CREATE OR REPLACE FUNCTION public.rule_render_message(
    template text, device_name text, metric text, value jsonb, operator text, threshold jsonb
)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- One pass over the template: each piece is a placeholder or literal text, and what a placeholder renders is
    -- never read again, so a device named "pump {value}" or a string value "{threshold}" stays as written.
    -- The pattern covers every character: a placeholder, a run without "{", or a lone "{" (alternatives take the
    -- longest match, so "{value}" is a placeholder, not "{" then "value}").
    -- #>> '{}' is a JSON scalar as text: strings without their quotes, numbers and booleans as written.
    SELECT coalesce(string_agg(
        CASE piece[1]
            WHEN '{device_name}' THEN device_name
            WHEN '{metric}' THEN metric
            WHEN '{value}' THEN coalesce(value #>> '{}', 'null')
            WHEN '{operator}' THEN CASE operator
                WHEN 'gt' THEN '>' WHEN 'lt' THEN '<' WHEN 'gte' THEN '>=' WHEN 'lte' THEN '<='
                WHEN 'eq' THEN '=' WHEN 'neq' THEN '!=' ELSE operator
            END
            WHEN '{threshold}' THEN threshold #>> '{}'
            ELSE piece[1]
        END, '' ORDER BY position), '')
    FROM regexp_matches(template, '\{(?:device_name|metric|value|operator|threshold)\}|[^{]+|\{', 'g')
        WITH ORDINALITY AS pieces(piece, position)
$$;

COMMENT ON FUNCTION public.rule_render_message(text, text, text, jsonb, text, jsonb) IS
    'An event message: the rule''s message_template with {device_name}, {metric}, {value}, {operator} (as a symbol, '
    'e.g. >=) and {threshold} replaced in one pass (rendered text is never substituted again).';
