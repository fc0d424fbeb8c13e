CREATE OR REPLACE FUNCTION public.rule_render_no_data_message(
    template text, device_name text, metric text, last_seen timestamptz, silent_for interval
)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- One pass over the template, like rule_render_message(): rendered text is never substituted again.
    SELECT coalesce(string_agg(
        CASE piece[1]
            WHEN '{device_name}' THEN device_name
            WHEN '{metric}' THEN coalesce(metric, 'any reading')
            WHEN '{last_seen}' THEN coalesce(public.utc_iso8601(last_seen), 'never')
            WHEN '{silent_for}' THEN public.duration_text(silent_for)
            ELSE piece[1]
        END, '' ORDER BY position), '')
    FROM regexp_matches(template, '\{(?:device_name|metric|last_seen|silent_for)\}|[^{]+|\{', 'g')
        WITH ORDINALITY AS pieces(piece, position)
$$;

COMMENT ON FUNCTION public.rule_render_no_data_message(text, text, text, timestamptz, interval) IS
    'A no-data event''s message: the rule''s message_template with {device_name}, {metric} ("any reading" without '
    'one), {last_seen} (UTC, or "never") and {silent_for} (e.g. 5m 30s) replaced in one pass.';
