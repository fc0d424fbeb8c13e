CREATE OR REPLACE FUNCTION public.rules_evaluate_no_data(evaluated_at timestamptz DEFAULT now())
RETURNS TABLE (events_opened integer, silences_ended integer)
LANGUAGE plpgsql
AS $$
DECLARE
    late_rules bigint[];
    late_devices uuid[];
    late_readings timestamptz[];
    queued integer;
    window_start timestamptz;
BEGIN
    -- No-data rules, as of evaluated_at: called by the worker every NO_DATA_EVALUATION_SECONDS (now()); tests and
    -- DBAs pass another moment. docs/rules.md, "No-data rules".
    events_opened := 0;
    silences_ended := 0;
    IF NOT EXISTS (SELECT FROM public.rules WHERE kind = 'no_data') THEN
        RETURN NEXT;
        RETURN;
    END IF;

    -- 1. Once per silence, in the call after the one that opened it: a reading committed while that call was still
    -- running ended the silence unseen (the rule trigger did not see the silence yet). Every later reading goes
    -- through the trigger, so one look suffices (and the look stays short: the readings since the alarm). The
    -- first reading after the alarm ends it. Rows locked in (rule_id, device_id) order.
    WITH unchecked AS (
        SELECT s.rule_id, s.device_id, s.silent_alarm_at
        FROM public.rule_states s
        WHERE s.silent_alarm_at IS NOT NULL AND NOT s.silence_rechecked
        ORDER BY s.rule_id, s.device_id
        FOR UPDATE
    ),
    rechecked AS (
        UPDATE public.rule_states s SET silence_rechecked = true
        FROM unchecked u
        WHERE s.rule_id = u.rule_id AND s.device_id = u.device_id
    )
    SELECT array_agg(u.rule_id), array_agg(u.device_id), array_agg(first_reading.time)
    INTO late_rules, late_devices, late_readings
    FROM unchecked u
    JOIN public.rules r ON r.id = u.rule_id AND r.kind = 'no_data'
    CROSS JOIN LATERAL (
        SELECT t.time FROM public.telemetry t
        WHERE t.device_id = u.device_id AND t.time > u.silent_alarm_at AND (r.metric IS NULL OR t.metrics ? r.metric)
        ORDER BY t.time
        LIMIT 1
    ) first_reading;
    IF late_rules IS NOT NULL THEN
        silences_ended := public.rules_end_silences(late_rules, late_devices, late_readings);
    END IF;

    -- 2. New silences: per enabled no-data rule and active device it targets, without an open silence, the device
    -- has been active for no_data_seconds and sent nothing (with the metric) for as long: one index probe of
    -- telemetry's primary key (device_id, time) over the last no_data_seconds. Only for the silent pairs is the
    -- newest reading looked up (for {last_seen}); the silence counts from it or from when the device last became
    -- active, whichever is later.
    -- The oldest moment any probe looks at, a constant for the whole statement: TimescaleDB leaves out the chunks
    -- before it once, when the statement starts, instead of checking every chunk at each of the probes (with 60
    -- one-day chunks that doubled a cycle).
    SELECT evaluated_at - max(r.no_data_seconds) * INTERVAL '1 second' INTO window_start
    FROM public.rules r
    WHERE r.kind = 'no_data' AND r.enabled;

    -- MATERIALIZED: each probe then compares with a plain value (quiet_since), which the index scan takes as its
    -- bound; computed inline, the planner filtered every reading of the device instead.
    WITH watched AS MATERIALIZED (
        SELECT r.id AS rule_id, d.id AS device_id, d.name AS device_name, d.status_changed_at, r.metric,
            r.no_data_seconds * INTERVAL '1 second' AS no_data,
            evaluated_at - r.no_data_seconds * INTERVAL '1 second' AS quiet_since
        FROM public.rules r
        JOIN public.devices d ON d.status = 'active'
            AND (r.device_id = d.id
                OR r.device_type_id = d.device_type_id
                OR (r.device_id IS NULL AND r.device_type_id IS NULL))
        WHERE r.kind = 'no_data' AND r.enabled
            AND d.status_changed_at <= evaluated_at - r.no_data_seconds * INTERVAL '1 second'
    ),
    silent AS MATERIALIZED (
        -- The probe is a LATERAL … LIMIT 1, not NOT EXISTS: that keeps it one index probe per pair whatever the
        -- planner estimates (as an anti-join it may hash every reading since window_start instead).
        SELECT w.*
        FROM watched w
        LEFT JOIN LATERAL (
            SELECT true AS seen FROM public.telemetry t
            WHERE t.device_id = w.device_id AND t.time > w.quiet_since AND t.time > window_start
                AND (w.metric IS NULL OR t.metrics ? w.metric)
            LIMIT 1
        ) recent ON true
        WHERE recent.seen IS NULL
            AND NOT EXISTS (
                SELECT FROM public.rule_states s
                WHERE s.rule_id = w.rule_id AND s.device_id = w.device_id AND s.silent_alarm_at IS NOT NULL
            )
    ),
    found AS (
        SELECT si.*, last_reading.time AS last_seen,
            greatest(last_reading.time, si.status_changed_at) AS silent_since
        FROM silent si
        LEFT JOIN LATERAL (
            SELECT t.time FROM public.telemetry t
            WHERE t.device_id = si.device_id AND (si.metric IS NULL OR t.metrics ? si.metric)
            ORDER BY t.time DESC
            LIMIT 1
        ) last_reading ON true
    ),
    marked AS (
        -- The state rows, locked in (rule_id, device_id) order before any event. A silence another call opened
        -- meanwhile is left alone (WHERE on the locked row): one event per silence.
        INSERT INTO public.rule_states AS s (rule_id, device_id, silent_since, silent_alarm_at, silence_rechecked)
        SELECT si.rule_id, si.device_id, si.silent_since, si.silent_since + si.no_data, false
        FROM found si
        ORDER BY si.rule_id, si.device_id
        ON CONFLICT (rule_id, device_id) DO UPDATE
        SET silent_since = excluded.silent_since, silent_alarm_at = excluded.silent_alarm_at,
            silence_rechecked = false
        WHERE s.silent_alarm_at IS NULL
        RETURNING s.rule_id, s.device_id
    ),
    upserted AS (
        -- The same events as threshold rules write: triggered_at is when the silence reached no_data_seconds;
        -- trigger_values say what was missing and since when. An unresolved event of the pair (dedupe) is bumped
        -- instead, once per silence.
        INSERT INTO public.events AS e (
            rule_id, rule_name, device_id, dedupe, severity, message,
            triggered_at, last_triggered_at, occurrence_count, trigger_values, last_values,
            status, acknowledged_note, resolved_note
        )
        SELECT r.id, r.name, si.device_id, r.dedupe, r.severity,
            public.rule_render_no_data_message(r.message_template, si.device_name, r.metric, si.last_seen,
                evaluated_at - si.silent_since),
            si.silent_since + si.no_data, si.silent_since + si.no_data, 1, v.trigger_values, v.trigger_values,
            'open', '', ''
        FROM marked m
        JOIN found si ON si.rule_id = m.rule_id AND si.device_id = m.device_id
        JOIN public.rules r ON r.id = m.rule_id
        CROSS JOIN LATERAL (
            SELECT jsonb_build_object('metric', r.metric, 'last_seen', public.utc_iso8601(si.last_seen),
                'silent_since', public.utc_iso8601(si.silent_since), 'no_data_seconds', r.no_data_seconds)
                AS trigger_values
        ) v
        ORDER BY r.id, si.device_id
        ON CONFLICT (rule_id, device_id) WHERE dedupe AND status IN ('open', 'acknowledged')
        DO UPDATE SET
            occurrence_count = e.occurrence_count + 1,
            last_triggered_at = greatest(e.last_triggered_at, excluded.last_triggered_at),
            last_values = excluded.last_values
        RETURNING e.id, e.rule_id, e.rule_name, e.device_id, e.severity, e.message, e.triggered_at,
            e.trigger_values, e.xmax = 0 AS created
    ),
    queued_rows AS (
        -- Each new event gets one pending notification per enabled channel of its rule, with the payload the rule
        -- trigger writes too (notification_payload()).
        INSERT INTO public.notifications (
            event_id, channel_id, status, payload, attempts, last_error, next_attempt_at, created_at, updated_at
        )
        SELECT u.id, c.id, 'pending',
            public.notification_payload(u.id, u.rule_id, u.rule_name, u.device_id, d.name, u.severity, u.message,
                u.triggered_at, u.trigger_values),
            0, '', now(), now(), now()
        FROM upserted u
        JOIN public.rule_channels rc ON rc.rule_id = u.rule_id
        JOIN public.notification_channels c ON c.id = rc.channel_id AND c.enabled
        JOIN public.devices d ON d.id = u.device_id
        WHERE u.created
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM upserted WHERE created), (SELECT count(*) FROM queued_rows)
    INTO events_opened, queued;

    -- NOTIFY serialises committing transactions: only when there is something to deliver.
    IF queued > 0 THEN
        PERFORM pg_notify('notifications_pending', '');
    END IF;
    RETURN NEXT;
END;
$$;

COMMENT ON FUNCTION public.rules_evaluate_no_data(timestamptz) IS
    'Evaluates the no-data rules as of evaluated_at (default now()): opens one event per new silence (no reading, '
    'of the metric or at all, for no_data_seconds from the later of the newest reading and the device''s last '
    'activation; active devices only) and ends, once per silence, those a reading ended unseen by the rule trigger. '
    'Returns the events opened and the silences ended. SELECT * FROM rules_evaluate_no_data();';
