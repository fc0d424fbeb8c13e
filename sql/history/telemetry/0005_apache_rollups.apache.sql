-- Materialized rollups for the Apache-2 build, which has no continuous aggregates (docs/operations.md, "Apache
-- rollups"). Replaces the plain views of 0002_aggregates.apache.sql, which computed every bucket from the raw
-- readings at query time (one device's 30 days at 1 h: 300-480 ms at 1 reading/min, tens of seconds at 1/s).
--
-- telemetry_1m/1h/1d keep their names and columns (bucket, device_id, metric, count, sum, min, max), so the API
-- and the ORM are the same on both editions. Each is now, like TimescaleDB's real-time continuous aggregates:
--   the closed buckets, read from a store below the watermark
--   UNION ALL the open ones, computed at query time from the level below (1 min from raw readings).
-- The stores live in the schema telemetry_rollup, as a continuous aggregate's materialization lives in
-- _timescaledb_internal: the public schema is the same on both editions.
--
-- Late readings (time below the invalidation threshold) are logged per device by a statement trigger on
-- telemetry, append-only; the next refresh recomputes those buckets. telemetry_rollup.refresh() advances the
-- watermark and recomputes; the worker calls it every minute (telemetry/tasks.py).

CREATE SCHEMA telemetry_rollup;
COMMENT ON SCHEMA telemetry_rollup IS
    'Apache build only: the materialized rollups behind telemetry_1m/1h/1d, their watermark and invalidation log.';

-- The refresh state: one row.
CREATE TABLE telemetry_rollup.state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- The stores are complete below it: store_1m below the watermark, store_1h below its hour, store_1d below
    -- its day. The views compute everything at or after it from the level below.
    watermark timestamptz NOT NULL DEFAULT '-infinity',
    -- The trigger logs readings older than this. At or above the watermark, and raised one refresh before the
    -- watermark follows it, so a writer that read an older threshold has finished before the watermark passes it.
    threshold timestamptz NOT NULL DEFAULT '-infinity',
    -- The next watermark, safe once every transaction with an xid below fence has ended (lock-free refresh).
    pending_watermark timestamptz,
    fence xid8,
    -- Raw retention: no bucket older than its first whole day is ever recomputed (its readings may be gone).
    raw_retention interval NOT NULL DEFAULT '90 days',
    refreshed_at timestamptz,
    CONSTRAINT state_threshold_not_below_watermark CHECK (threshold >= watermark),
    CONSTRAINT state_fence_with_pending CHECK ((fence IS NULL) = (pending_watermark IS NULL))
);
INSERT INTO telemetry_rollup.state DEFAULT VALUES;

-- Late readings: one row per device and inserting statement, append-only (no index, no row is ever updated), so
-- concurrent writers never wait on each other here. Consumed (deleted) by refresh().
CREATE TABLE telemetry_rollup.invalidations (
    device_id uuid NOT NULL,
    low timestamptz NOT NULL,
    high timestamptz NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT invalidations_low_not_after_high CHECK (low <= high)
);

-- The stores: the columns of the views, one row per (device, bucket, metric). Hypertables on bucket, so retention
-- drops whole chunks (enforce_retention); the primary key (device_id, bucket, metric) serves the views' reads.
-- No foreign key to devices: Django's test flush truncates devices without CASCADE; forget_devices() below
-- deletes a deleted device's rows instead.
CREATE TABLE telemetry_rollup.store_1m (
    bucket timestamptz NOT NULL,
    device_id uuid NOT NULL,
    metric text NOT NULL,
    count bigint NOT NULL,
    sum double precision NOT NULL,
    min double precision NOT NULL,
    max double precision NOT NULL,
    PRIMARY KEY (device_id, bucket, metric)
);
CREATE TABLE telemetry_rollup.store_1h (LIKE telemetry_rollup.store_1m INCLUDING ALL);
CREATE TABLE telemetry_rollup.store_1d (LIKE telemetry_rollup.store_1m INCLUDING ALL);
SELECT public.create_hypertable('telemetry_rollup.store_1m', public.by_range('bucket', INTERVAL '1 day'),
    create_default_indexes => false);
SELECT public.create_hypertable('telemetry_rollup.store_1h', public.by_range('bucket', INTERVAL '30 days'),
    create_default_indexes => false);
SELECT public.create_hypertable('telemetry_rollup.store_1d', public.by_range('bucket', INTERVAL '180 days'),
    create_default_indexes => false);

-- The watermark as the views read it. Declared IMMUTABLE (it is not) so that the planner folds it into a constant
-- when it plans a query: TimescaleDB then excludes at plan time every chunk the query can't need (the raw and
-- 1-minute tails touch one or two chunks, not all 90), and the estimates stay small (no JIT compilation, which
-- cost 1.5-3 s per query with a runtime-only watermark). Safe because a view is exact with any value at or below
-- the current watermark (the stores are complete below it, raw data above it): a plan kept from earlier (a
-- prepared statement) holds an older value and only reads more raw readings.
CREATE FUNCTION telemetry_rollup.watermark()
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
AS $$
    SELECT st.watermark FROM telemetry_rollup.state st
$$;

COMMENT ON FUNCTION telemetry_rollup.watermark() IS
    'telemetry_rollup.state.watermark, folded into a constant at plan time by the views (IMMUTABLE on purpose).';

-- The views: closed buckets from the store, open ones from the level below. The filters on the watermark are
-- index conditions on the stores' (device_id, bucket) and on telemetry's (device_id, time): a query for one
-- device and a bucket range reads its stored buckets by index and only the raw readings since the watermark.
DROP VIEW public.telemetry_1d;
DROP VIEW public.telemetry_1h;
DROP VIEW public.telemetry_1m;

CREATE VIEW public.telemetry_1m AS
SELECT s.bucket, s.device_id, s.metric, s.count, s.sum, s.min, s.max
FROM telemetry_rollup.store_1m s
WHERE s.bucket < telemetry_rollup.watermark()
UNION ALL
-- jsonb_typeof filters before any cast: the aggregates' casts only see numbers.
SELECT
    public.time_bucket(INTERVAL '1 minute', t.time) AS bucket,
    t.device_id,
    m.key AS metric,
    count(*) AS count,
    sum(m.value::double precision) AS sum,
    min(m.value::double precision) AS min,
    max(m.value::double precision) AS max
FROM public.telemetry t
CROSS JOIN LATERAL jsonb_each(t.metrics) AS m
WHERE jsonb_typeof(m.value) = 'number'
    AND t.time >= telemetry_rollup.watermark()
GROUP BY 1, 2, 3;

-- GROUP BY by position: a bare `bucket` there would mean the input column, not the coarser bucket.
CREATE VIEW public.telemetry_1h AS
SELECT s.bucket, s.device_id, s.metric, s.count, s.sum, s.min, s.max
FROM telemetry_rollup.store_1h s
WHERE s.bucket < public.time_bucket(INTERVAL '1 hour', telemetry_rollup.watermark())
UNION ALL
SELECT
    public.time_bucket(INTERVAL '1 hour', a.bucket) AS bucket,
    a.device_id,
    a.metric,
    sum(a.count)::bigint AS count,
    sum(a.sum) AS sum,
    min(a.min) AS min,
    max(a.max) AS max
FROM public.telemetry_1m a
WHERE a.bucket >= public.time_bucket(INTERVAL '1 hour', telemetry_rollup.watermark())
GROUP BY 1, 2, 3;

CREATE VIEW public.telemetry_1d AS
SELECT s.bucket, s.device_id, s.metric, s.count, s.sum, s.min, s.max
FROM telemetry_rollup.store_1d s
WHERE s.bucket < public.time_bucket(INTERVAL '1 day', telemetry_rollup.watermark())
UNION ALL
SELECT
    public.time_bucket(INTERVAL '1 day', a.bucket) AS bucket,
    a.device_id,
    a.metric,
    sum(a.count)::bigint AS count,
    sum(a.sum) AS sum,
    min(a.min) AS min,
    max(a.max) AS max
FROM public.telemetry_1h a
WHERE a.bucket >= public.time_bucket(INTERVAL '1 day', telemetry_rollup.watermark())
GROUP BY 1, 2, 3;

-- The invalidation trigger: AFTER INSERT, FOR EACH STATEMENT, one INSERT … SELECT over the transition table. It
-- writes only when a reading is older than the threshold (late data); on the normal path it reads one row and
-- writes nothing. Not a pgtrigger trigger: it exists on the Apache build only, and pgtrigger.ignore() (used for
-- backfills of the rule trigger) must not make a backfill invisible to the rollups.
CREATE FUNCTION telemetry_rollup.log_invalidations()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO telemetry_rollup.invalidations (device_id, low, high)
    SELECT n.device_id, min(n.time), max(n.time)
    FROM new_rows n
    WHERE n.time < (SELECT st.threshold FROM telemetry_rollup.state st)
    GROUP BY n.device_id;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION telemetry_rollup.log_invalidations() IS
    'Trigger telemetry_rollup_invalidate: logs (device, min(time), max(time)) of the readings an INSERT wrote below '
    'telemetry_rollup.state.threshold, for the next telemetry_rollup.refresh() to recompute.';

CREATE TRIGGER telemetry_rollup_invalidate
AFTER INSERT ON public.telemetry
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION telemetry_rollup.log_invalidations();

-- A deleted device's readings go by the foreign key's cascade; its rollups go here.
CREATE FUNCTION telemetry_rollup.forget_devices()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    DELETE FROM telemetry_rollup.store_1m s USING old_rows o WHERE s.device_id = o.id;
    DELETE FROM telemetry_rollup.store_1h s USING old_rows o WHERE s.device_id = o.id;
    DELETE FROM telemetry_rollup.store_1d s USING old_rows o WHERE s.device_id = o.id;
    DELETE FROM telemetry_rollup.invalidations i USING old_rows o WHERE i.device_id = o.id;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION telemetry_rollup.forget_devices() IS
    'Trigger devices_forget_rollups: deletes the rollups and pending invalidations of deleted devices.';

CREATE TRIGGER devices_forget_rollups
AFTER DELETE ON public.devices
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION telemetry_rollup.forget_devices();

-- Per device, the disjoint ranges of whole buckets of `width` covering the invalidated readings
-- [lows[i], highs[i]] of devices[i], clipped to [since, before).
CREATE FUNCTION telemetry_rollup.bucket_spans(
    width interval, devices uuid[], lows timestamptz[], highs timestamptz[], since timestamptz, before timestamptz
)
RETURNS TABLE (device_id uuid, low timestamptz, high timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT s.device_id, lower(s.span), upper(s.span)
    FROM (
        SELECT i.device_id, unnest(range_agg(
            tstzrange(public.time_bucket(width, i.low), public.time_bucket(width, i.high) + width)
            * tstzrange(since, before))) AS span
        FROM unnest(devices, lows, highs) AS i(device_id, low, high)
        GROUP BY i.device_id
    ) s
$$;

COMMENT ON FUNCTION telemetry_rollup.bucket_spans(interval, uuid[], timestamptz[], timestamptz[], timestamptz,
    timestamptz) IS
    'Used by telemetry_rollup.refresh(): per device, the merged ranges of whole buckets to recompute.';

CREATE FUNCTION telemetry_rollup.refresh(
    raw_retention interval DEFAULT NULL,
    behind interval DEFAULT INTERVAL '5 minutes',
    wait_for_writers boolean DEFAULT false,
    max_advance interval DEFAULT NULL
)
RETURNS TABLE (
    new_watermark timestamptz,
    new_threshold timestamptz,
    previous_watermark timestamptz,
    invalidated_spans integer
)
LANGUAGE plpgsql
AS $$
DECLARE
    st telemetry_rollup.state%ROWTYPE;
    own_row boolean;
    retention interval;
    target timestamptz;
    horizon timestamptz;
    advance_from timestamptz;
    snap pg_snapshot;
    devs uuid[];
    lows timestamptz[];
    highs timestamptz[];
BEGIN
    -- One refresh at a time. The trigger's plain read of the threshold is never blocked by this lock.
    SELECT * INTO st FROM telemetry_rollup.state s WHERE s.id FOR UPDATE;
    SELECT s.xmin = pg_catalog.xid(pg_current_xact_id_if_assigned()) INTO own_row
    FROM telemetry_rollup.state s WHERE s.id;
    retention := coalesce(refresh.raw_retention, st.raw_retention);
    target := public.time_bucket(INTERVAL '1 minute', now() - behind);
    -- The first whole day that raw retention keeps: older buckets are never recomputed (their readings may be
    -- gone), and late readings there are dropped from the log.
    horizon := public.time_bucket(INTERVAL '1 day', now() - retention) + INTERVAL '1 day';
    IF wait_for_writers THEN
        -- Waits for every transaction writing telemetry and holds new ones back until this one commits: all
        -- readings below the target are committed and visible now, and later writers see the new threshold.
        LOCK TABLE public.telemetry IN SHARE MODE;
        new_watermark := greatest(st.watermark, target);
        st.fence := NULL;
        st.pending_watermark := NULL;
    ELSE
        -- Lock-free: the watermark moves to a threshold committed by an earlier refresh once every transaction
        -- that might have read an older threshold (an xid below the fence) has ended.
        snap := pg_current_snapshot();
        new_watermark := st.watermark;
        IF st.fence IS NOT NULL AND pg_snapshot_xmin(snap) >= st.fence THEN
            new_watermark := greatest(st.watermark, st.pending_watermark);
        END IF;
    END IF;

    -- Catching up in steps: a call never materializes more than max_advance of readings.
    IF max_advance IS NOT NULL AND new_watermark > st.watermark THEN
        advance_from := st.watermark;
        IF advance_from = '-infinity' THEN
            SELECT min(c.range_start) INTO advance_from
            FROM timescaledb_information.chunks c
            WHERE c.hypertable_schema = 'public' AND c.hypertable_name = 'telemetry';
        END IF;
        IF advance_from IS NOT NULL AND new_watermark > advance_from + max_advance THEN
            new_watermark := greatest(st.watermark,
                public.time_bucket(INTERVAL '1 minute', advance_from + max_advance));
        END IF;
    END IF;

    -- A fence, once passed, stays passed (xmin only grows): it is spent only when the watermark reaches its
    -- threshold. Then a new one is set for the current threshold. A writer that read a threshold older than
    -- st.threshold read it before st.threshold was committed, so after it had its xid: below this snapshot's
    -- xmax. Not when this transaction wrote the state row itself (st.threshold not committed yet).
    IF st.pending_watermark IS NOT NULL AND new_watermark >= st.pending_watermark THEN
        st.fence := NULL;
        st.pending_watermark := NULL;
    END IF;
    IF NOT wait_for_writers AND st.fence IS NULL AND st.threshold > new_watermark AND NOT coalesce(own_row, false)
    THEN
        st.fence := pg_snapshot_xmax(snap);
        st.pending_watermark := st.threshold;
    END IF;
    st.threshold := greatest(st.threshold, target, new_watermark);

    -- Late readings logged since the last refresh, merged per device. Only those below the old watermark need
    -- recomputing: above it, the forward pass below (or a later one) reads them from raw anyway.
    WITH taken AS (
        DELETE FROM telemetry_rollup.invalidations RETURNING device_id, low, high
    ),
    merged AS (
        SELECT t.device_id, unnest(range_agg(tstzrange(t.low, t.high, '[]'))) AS span
        FROM taken t
        GROUP BY t.device_id
    )
    SELECT array_agg(m.device_id), array_agg(lower(m.span)), array_agg(upper(m.span))
    INTO devs, lows, highs
    FROM merged m
    WHERE upper(m.span) >= horizon AND lower(m.span) < st.watermark;

    -- Each level: recompute the invalidated buckets below its old watermark (delete, then insert: exact even if
    -- readings were deleted), then add the buckets that closed between the old and the new watermark.
    -- 1 minute, from raw readings.
    IF devs IS NOT NULL THEN
        DELETE FROM telemetry_rollup.store_1m s
        USING telemetry_rollup.bucket_spans(INTERVAL '1 minute', devs, lows, highs, horizon, st.watermark) b
        WHERE s.device_id = b.device_id AND s.bucket >= b.low AND s.bucket < b.high;
        INSERT INTO telemetry_rollup.store_1m AS s (bucket, device_id, metric, count, sum, min, max)
        SELECT public.time_bucket(INTERVAL '1 minute', t.time), t.device_id, m.key, count(*),
            sum(m.value::double precision), min(m.value::double precision), max(m.value::double precision)
        FROM telemetry_rollup.bucket_spans(INTERVAL '1 minute', devs, lows, highs, horizon, st.watermark) b
        JOIN public.telemetry t ON t.device_id = b.device_id AND t.time >= b.low AND t.time < b.high
        CROSS JOIN LATERAL jsonb_each(t.metrics) AS m
        WHERE jsonb_typeof(m.value) = 'number'
        GROUP BY 1, 2, 3
        ON CONFLICT (device_id, bucket, metric) DO UPDATE
        SET count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max;
    END IF;
    IF new_watermark > st.watermark THEN
        INSERT INTO telemetry_rollup.store_1m AS s (bucket, device_id, metric, count, sum, min, max)
        SELECT public.time_bucket(INTERVAL '1 minute', t.time), t.device_id, m.key, count(*),
            sum(m.value::double precision), min(m.value::double precision), max(m.value::double precision)
        FROM public.telemetry t
        CROSS JOIN LATERAL jsonb_each(t.metrics) AS m
        WHERE t.time >= st.watermark AND t.time < new_watermark AND jsonb_typeof(m.value) = 'number'
        GROUP BY 1, 2, 3
        ON CONFLICT (device_id, bucket, metric) DO UPDATE
        SET count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max;
    END IF;

    -- 1 hour, from the 1-minute store.
    IF devs IS NOT NULL THEN
        DELETE FROM telemetry_rollup.store_1h s
        USING telemetry_rollup.bucket_spans(INTERVAL '1 hour', devs, lows, highs, horizon,
            public.time_bucket(INTERVAL '1 hour', st.watermark)) b
        WHERE s.device_id = b.device_id AND s.bucket >= b.low AND s.bucket < b.high;
        INSERT INTO telemetry_rollup.store_1h AS s (bucket, device_id, metric, count, sum, min, max)
        SELECT public.time_bucket(INTERVAL '1 hour', a.bucket), a.device_id, a.metric, sum(a.count)::bigint,
            sum(a.sum), min(a.min), max(a.max)
        FROM telemetry_rollup.bucket_spans(INTERVAL '1 hour', devs, lows, highs, horizon,
            public.time_bucket(INTERVAL '1 hour', st.watermark)) b
        JOIN telemetry_rollup.store_1m a ON a.device_id = b.device_id AND a.bucket >= b.low AND a.bucket < b.high
        GROUP BY 1, 2, 3
        ON CONFLICT (device_id, bucket, metric) DO UPDATE
        SET count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max;
    END IF;
    IF public.time_bucket(INTERVAL '1 hour', new_watermark) > public.time_bucket(INTERVAL '1 hour', st.watermark) THEN
        INSERT INTO telemetry_rollup.store_1h AS s (bucket, device_id, metric, count, sum, min, max)
        SELECT public.time_bucket(INTERVAL '1 hour', a.bucket), a.device_id, a.metric, sum(a.count)::bigint,
            sum(a.sum), min(a.min), max(a.max)
        FROM telemetry_rollup.store_1m a
        WHERE a.bucket >= public.time_bucket(INTERVAL '1 hour', st.watermark)
            AND a.bucket < public.time_bucket(INTERVAL '1 hour', new_watermark)
        GROUP BY 1, 2, 3
        ON CONFLICT (device_id, bucket, metric) DO UPDATE
        SET count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max;
    END IF;

    -- 1 day, from the 1-hour store.
    IF devs IS NOT NULL THEN
        DELETE FROM telemetry_rollup.store_1d s
        USING telemetry_rollup.bucket_spans(INTERVAL '1 day', devs, lows, highs, horizon,
            public.time_bucket(INTERVAL '1 day', st.watermark)) b
        WHERE s.device_id = b.device_id AND s.bucket >= b.low AND s.bucket < b.high;
        INSERT INTO telemetry_rollup.store_1d AS s (bucket, device_id, metric, count, sum, min, max)
        SELECT public.time_bucket(INTERVAL '1 day', a.bucket), a.device_id, a.metric, sum(a.count)::bigint,
            sum(a.sum), min(a.min), max(a.max)
        FROM telemetry_rollup.bucket_spans(INTERVAL '1 day', devs, lows, highs, horizon,
            public.time_bucket(INTERVAL '1 day', st.watermark)) b
        JOIN telemetry_rollup.store_1h a ON a.device_id = b.device_id AND a.bucket >= b.low AND a.bucket < b.high
        GROUP BY 1, 2, 3
        ON CONFLICT (device_id, bucket, metric) DO UPDATE
        SET count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max;
    END IF;
    IF public.time_bucket(INTERVAL '1 day', new_watermark) > public.time_bucket(INTERVAL '1 day', st.watermark) THEN
        INSERT INTO telemetry_rollup.store_1d AS s (bucket, device_id, metric, count, sum, min, max)
        SELECT public.time_bucket(INTERVAL '1 day', a.bucket), a.device_id, a.metric, sum(a.count)::bigint,
            sum(a.sum), min(a.min), max(a.max)
        FROM telemetry_rollup.store_1h a
        WHERE a.bucket >= public.time_bucket(INTERVAL '1 day', st.watermark)
            AND a.bucket < public.time_bucket(INTERVAL '1 day', new_watermark)
        GROUP BY 1, 2, 3
        ON CONFLICT (device_id, bucket, metric) DO UPDATE
        SET count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max;
    END IF;

    UPDATE telemetry_rollup.state s
    SET watermark = new_watermark, threshold = st.threshold, pending_watermark = st.pending_watermark,
        fence = st.fence, raw_retention = retention, refreshed_at = clock_timestamp()
    WHERE s.id;

    previous_watermark := st.watermark;
    new_threshold := st.threshold;
    invalidated_spans := coalesce(cardinality(devs), 0);
    RETURN NEXT;
END;
$$;

COMMENT ON FUNCTION telemetry_rollup.refresh(interval, interval, boolean, interval) IS
    'Brings the Apache rollups up to date; idempotent, one at a time, in the caller''s transaction. '
    'Recomputes the buckets of logged late readings (none older than the first whole day raw_retention keeps), '
    'then moves the watermark forward over closed buckets, upserting each (device, bucket, metric). '
    'raw_retention: TELEMETRY_RETENTION_DAYS (NULL: the last value given, kept in state). '
    'behind: how far behind now() the threshold stays, so readings arriving a little late are not late data. '
    'wait_for_writers: lock telemetry in SHARE mode (waits for running writers, holds new ones until commit) and '
    'move the watermark to the threshold now; without it, lock-free, the watermark follows the threshold one '
    'refresh later, once every writer that could have read the old threshold has ended. '
    'max_advance: at most this much of readings per call (NULL: everything). '
    'Returns the new watermark and threshold, the previous watermark and the number of invalidated spans.';
