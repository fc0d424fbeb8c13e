CREATE OR REPLACE FUNCTION public.telemetry_merge_adds_metrics(
    device_id uuid, "time" timestamptz, stored jsonb, reading jsonb
)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    conflicting text;
BEGIN
    -- A metric the stored reading holds with another value: the two readings contradict each other, and which one
    -- is right is the sender's call, not ours. Values compare as JSON (numbers numerically, 21 = 21.0; objects
    -- whole, key by key).
    SELECT r.key INTO conflicting
    FROM jsonb_each(reading) r
    WHERE stored -> r.key <> r.value
    ORDER BY r.key
    LIMIT 1;
    IF conflicting IS NOT NULL THEN
        RAISE EXCEPTION 'The reading of device % at % has metric "%" = %, the stored one has %.',
            device_id, public.utc_iso8601("time"), conflicting, reading -> conflicting, stored -> conflicting
            USING ERRCODE = 'IO003',
                HINT = 'Readings of one device and time merge only when the metrics they share have equal values.';
    END IF;
    RETURN EXISTS (SELECT FROM jsonb_object_keys(reading) k WHERE NOT stored ? k);
END;
$$;

COMMENT ON FUNCTION public.telemetry_merge_adds_metrics(uuid, timestamptz, jsonb, jsonb) IS
    'Ingest''s ON CONFLICT DO UPDATE condition: true when a reading adds metrics to the stored reading of its device '
    'and time (they merge), false when it adds none (a duplicate); raises IO003 when a metric both hold differs.';
