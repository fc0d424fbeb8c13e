CREATE OR REPLACE FUNCTION public.notification_payload(
    event_id bigint, rule_id bigint, rule_name text, device_id uuid, device_name text, severity text, message text,
    triggered_at timestamptz, trigger_values jsonb
)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    -- What a notification delivers, frozen when its event opens (rules.models.NOTIFICATION_PAYLOAD_KEYS; the worker
    -- reads it in rules.notifications): written by the rule trigger and by rules_evaluate_no_data().
    SELECT jsonb_build_object(
        'event_id', event_id, 'rule_id', rule_id, 'rule_name', rule_name, 'device_id', device_id,
        'device_name', device_name, 'severity', severity, 'message', message,
        'triggered_at', public.utc_iso8601(triggered_at), 'trigger_values', trigger_values
    )
$$;

COMMENT ON FUNCTION public.notification_payload(bigint, bigint, text, uuid, text, text, text, timestamptz, jsonb) IS
    'The payload of a notification of a new event, as the rule trigger and rules_evaluate_no_data() queue it and '
    'the worker delivers it.';
