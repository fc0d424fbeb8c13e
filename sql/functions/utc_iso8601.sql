CREATE OR REPLACE FUNCTION public.utc_iso8601(moment timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- The API's timestamp format (ISO 8601 in UTC with "Z", microseconds only when there are some), whatever the
    -- session's TimeZone: a timestamptz cast to text or put into jsonb follows the session instead.
    SELECT to_char(moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM moment) % 1000000 = 0 THEN ''
            ELSE to_char(moment AT TIME ZONE 'UTC', '.US') END
        || 'Z'
$$;

COMMENT ON FUNCTION public.utc_iso8601(timestamptz) IS
    'A timestamp as the API writes it, e.g. 2026-11-27T12:00:00Z or 2026-11-27T12:00:00.250000Z, in UTC whatever '
    'the session''s TimeZone: what the database writes into payloads and notes.';
