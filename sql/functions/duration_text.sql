CREATE OR REPLACE FUNCTION public.duration_text(span interval)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- Whole seconds, largest units first, zero units left out: 45s, 5m 30s, 2h 5m, 3d 4h 0m 10s → 3d 4h 10s.
    SELECT CASE WHEN total < 1 THEN '0s' ELSE concat_ws(' ',
        CASE WHEN total >= 86400 THEN (total / 86400) || 'd' END,
        CASE WHEN total % 86400 >= 3600 THEN (total % 86400 / 3600) || 'h' END,
        CASE WHEN total % 3600 >= 60 THEN (total % 3600 / 60) || 'm' END,
        CASE WHEN total % 60 > 0 THEN (total % 60) || 's' END) END
    FROM (SELECT floor(extract(epoch FROM span))::bigint AS total) s
$$;

COMMENT ON FUNCTION public.duration_text(interval) IS
    'A duration for people, in whole seconds: 45s, 5m 30s, 2h 5m, 3d 10s (what a no-data message shows as '
    '{silent_for}).';
