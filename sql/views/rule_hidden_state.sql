CREATE OR REPLACE VIEW public.rule_hidden_state AS
-- What the rules are waiting for, per (rule, device), from rule_states: a duration in progress (pending), an
-- auto-resolving event waiting for its clearing reading (open_until_clear), an open silence (silent).
SELECT s.rule_id, r.name AS rule_name, r.kind AS rule_kind, s.device_id, d.name AS device_name,
    w.state, w.since, w.until, w.readings, s.changed_at AS newest_reading_at
FROM public.rule_states s
JOIN public.rules r ON r.id = s.rule_id
JOIN public.devices d ON d.id = s.device_id
CROSS JOIN LATERAL (
    -- since: when the condition started (first matching reading of the span, the silence's start);
    -- until: the earliest time the event can open (pending) or when it opened (silent); readings: matching ones.
    SELECT 'pending' AS state, s.span_started_at AS since,
        s.span_started_at + r.for_seconds * INTERVAL '1 second' AS until, s.span_count AS readings
    WHERE r.kind = 'threshold' AND r.for_seconds IS NOT NULL AND s.span_started_at IS NOT NULL
        AND s.span_last_at - s.span_started_at < r.for_seconds * INTERVAL '1 second'
    UNION ALL
    SELECT 'open_until_clear', coalesce(s.span_started_at, s.changed_at), NULL, s.span_count
    WHERE r.kind = 'threshold' AND s.event_open
    UNION ALL
    SELECT 'silent', s.silent_since, s.silent_alarm_at, NULL
    WHERE s.silent_alarm_at IS NOT NULL
) w;

COMMENT ON VIEW public.rule_hidden_state IS
    'Per (rule, device), what a rule waits for: pending (a duration in progress, the event opens at "until" if the '
    'readings keep matching), open_until_clear (an auto_resolve event waiting for its clearing reading), silent (a '
    'no-data silence since "since", its event opened at "until"). docs/rules.md, "What the rules are waiting for".';
