"""Reads of the telemetry app."""

import json
from datetime import timedelta

from django.db import connections
from django.db.models import OuterRef, Subquery
from psycopg2 import sql

from iothub import edition
from iothub.api.exports import server_side_rows
from iothub.api.formats import utc_iso
from iothub.replica import telemetry_database
from telemetry.buckets import BUCKET_ORIGIN, aggregate_buckets
from telemetry.models import Device, Telemetry


def last_seen_at_subquery():
    """The time of the device's newest reading, read from the hypertable at query time.

    Nothing on the device row is updated by ingest, so a reading never waits on a device row lock. The
    ``ORDER BY time DESC LIMIT 1`` walks the (device_id, time) primary key of the newest chunk first and stops at
    the first row: one short index scan per device, not a scan of its history.
    """
    newest = Telemetry.objects.filter(device_id=OuterRef("pk")).order_by("-time").values("time")[:1]
    return Subquery(newest)


def device_list():
    """Devices with ``last_seen_at``, computed in the same query as the devices (no N+1)."""
    return Device.objects.annotate(last_seen_at=last_seen_at_subquery())


# Aggregate views by bucket width in seconds, coarsest first (sql/views/telemetry_1*.sql).
AGGREGATE_VIEWS = ((86400, "telemetry_1d"), (3600, "telemetry_1h"), (60, "telemetry_1m"))
LATEST_METRICS_WINDOW = timedelta(hours=24)


def telemetry_readings(*, device, start, end, metrics=None):
    """The device's readings in ``[start, end)``; with ``metrics``, only those holding at least one of them.

    Unordered: the cursor pagination orders by ``time``, which the (device_id, time) primary key serves.
    """
    readings = Telemetry.objects.filter(device=device, time__gte=start, time__lt=end)
    if metrics:
        readings = readings.filter(metrics__has_any_keys=metrics)
    return readings


# Keys the newest reading lacks, with their newest value: only readings holding such a key are unpacked, so
# a device sending the same keys every second costs one pass over a day of its primary key (≈80 ms for
# 86,400 readings) instead of unpacking every reading (≈440 ms).
OLDER_METRICS_SQL = """
    SELECT m.key, last(m.value, t.time), max(t.time)
    FROM telemetry t
    CROSS JOIN LATERAL jsonb_each(t.metrics - %(known)s::text[]) AS m
    WHERE t.device_id = %(device)s AND t.time >= %(since)s AND t.time < %(before)s
      AND t.metrics - %(known)s::text[] <> '{}'::jsonb
    GROUP BY m.key
"""


def telemetry_latest(*, device, now):
    """The newest reading (or None), and ``{metric: (value, time)}``: the newest value of every metric seen in
    the 24 hours before ``now``.

    The newest reading walks the (device_id, time) primary key backwards and stops at the first row; it gives
    the newest value of its own keys. One more query over the day's readings finds the keys it lacks.
    """
    reading = Telemetry.objects.filter(device=device).order_by("-time").first()
    since = now - LATEST_METRICS_WINDOW
    if reading is None or reading.time < since:
        return reading, {}
    metrics = {key: (value, reading.time) for key, value in reading.metrics.items()}
    with connections[telemetry_database()].cursor() as cursor:
        params = {"device": device.pk, "since": since, "before": reading.time, "known": list(reading.metrics)}
        cursor.execute(OLDER_METRICS_SQL, params)
        # Django reads jsonb as text with psycopg2 (JSONField decodes it): decode here.
        metrics.update((key, (json.loads(value), time)) for key, value, time in cursor.fetchall())
    return reading, dict(sorted(metrics.items()))


def aggregate_source(interval):
    """The coarsest aggregate view whose bucket divides ``interval``, or None for raw readings."""
    seconds = interval.total_seconds()
    return next((view for width, view in AGGREGATE_VIEWS if seconds % width == 0), None)


# Where each edition's aggregate level is materialized up to (docs/operations.md, "How complete an aggregate
# answer is"). Before anything is materialized the watermark is the edition's minimum (TSL: 4714 BC, Apache:
# -infinity): no time then.
_TSL_WATERMARK = """
    SELECT CASE WHEN w >= '0001-01-01T00:00:00Z' THEN w END
    FROM (
        SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(c.mat_hypertable_id)) AS w
        FROM _timescaledb_catalog.continuous_agg c
        WHERE c.user_view_schema = 'public' AND c.user_view_name = %(view)s
    ) AS watermark
"""
_APACHE_WATERMARK = """
    SELECT CASE WHEN isfinite(w) THEN w END
    FROM (SELECT public.time_bucket(%(width)s, telemetry_rollup.watermark()) AS w) AS watermark
"""


def aggregate_complete_until(interval):
    """The time before which the aggregate serving ``interval`` is materialized, or None (raw readings, or nothing
    materialized yet). Buckets from it on are computed from the raw readings at query time (real time); below
    it, a reading that arrived late is counted at the next refresh."""
    seconds = interval.total_seconds()
    width, view = next(((width, view) for width, view in AGGREGATE_VIEWS if seconds % width == 0), (None, None))
    if view is None:
        return None
    query = _TSL_WATERMARK if edition.current() == edition.TIMESCALE else _APACHE_WATERMARK
    with connections[telemetry_database()].cursor() as cursor:  # where the aggregates are read
        cursor.execute(query, {"view": view, "width": timedelta(seconds=width)})
        row = cursor.fetchone()
    return row[0] if row else None


# Re-bucketing is exact because the stored buckets nest in the requested ones (same origin, width dividing
# the interval) and hold sum and count, never avg.
_FROM_AGGREGATE = """
    SELECT time_bucket(%(interval)s, a.bucket, %(origin)s) AS b, a.metric,
           sum(a.count)::bigint, min(a.min), max(a.max), sum(a.sum)
    FROM {source} AS a
    WHERE a.device_id = %(device)s AND a.bucket >= %(first)s AND a.bucket < %(stop)s {metric_filter}
    GROUP BY 1, 2
    ORDER BY b, a.metric COLLATE "C"
"""
# The numbers the aggregate views count (sql/views/telemetry_1m.*.sql): within ingest's bound (MAX_MAGNITUDE), so
# a bigger one written by SQL can't overflow a sum; the CASE tests the type before the cast.
_FROM_RAW = """
    SELECT time_bucket(%(interval)s, t.time, %(origin)s) AS b, m.key,
           count(*), min(m.value::float8), max(m.value::float8), sum(m.value::float8)
    FROM telemetry AS t
    CROSS JOIN LATERAL jsonb_each(t.metrics) AS m
    WHERE t.device_id = %(device)s AND t.time >= %(first)s AND t.time < %(stop)s
      AND CASE WHEN jsonb_typeof(m.value) = 'number' THEN abs(m.value::numeric) <= 1e288 ELSE false END {metric_filter}
    GROUP BY 1, 2
    ORDER BY b, m.key COLLATE "C"
"""


def _aggregate_query(*, device, start, end, interval, metrics):
    """The aggregate query (rows ``bucket, metric, count, min, max, sum``) and its parameters."""
    first, stop, _ = aggregate_buckets(start=start, end=end, interval=interval)
    view = aggregate_source(interval)
    if view is None:
        query = sql.SQL(_FROM_RAW).format(
            metric_filter=sql.SQL("AND m.key = ANY(%(metrics)s)" if metrics else ""),
        )
    else:
        query = sql.SQL(_FROM_AGGREGATE).format(
            source=sql.Identifier(view),
            metric_filter=sql.SQL("AND a.metric = ANY(%(metrics)s)" if metrics else ""),
        )
    params = {
        "device": device.pk,
        "interval": interval,
        "origin": BUCKET_ORIGIN,
        "first": first,
        "stop": stop,
        "metrics": list(metrics or ()),
    }
    return query, params


def telemetry_aggregate(*, device, start, end, interval, metrics=None):
    """``[{bucket, metric, count, min, max, avg, sum}]`` of the device's numeric top-level metrics in buckets
    of ``interval`` starting in ``[start, end)``, each over its whole interval (see ``aggregate_buckets``),
    ordered by bucket then metric. Served from the coarsest aggregate whose bucket divides the interval, else from
    raw readings.
    """
    query, params = _aggregate_query(device=device, start=start, end=end, interval=interval, metrics=metrics)
    with connections[telemetry_database()].cursor() as cursor:
        cursor.execute(query.as_string(cursor.connection), params)
        return [
            {
                "bucket": bucket,
                "metric": metric,
                "count": count,
                "min": low,
                "max": high,
                "avg": total / count,
                "sum": total,
            }
            for bucket, metric, count, low, high, total in cursor.fetchall()
        ]


# CSV exports (iothub/api/exports.py): each returns ``produce(connection) -> (header, rows)`` for csv_response, run
# inside the export's transaction. Without ``metrics``, the columns are every metric the range holds, by name.

_READING_METRICS_SQL = """
    SELECT DISTINCT m.key COLLATE "C"
    FROM telemetry t CROSS JOIN LATERAL jsonb_object_keys(t.metrics) AS m(key)
    WHERE t.device_id = %(device)s AND t.time >= %(start)s AND t.time < %(end)s
    ORDER BY 1
"""
# Cells as PostgreSQL writes the values: numbers as stored (jsonb keeps what was sent: 21.50 stays 21.50),
# true/false, strings bare, objects as JSON; NULL (an empty cell) where the reading lacks the metric.
_READINGS_SQL = """
    SELECT public.utc_iso8601(t.time) {columns}
    FROM telemetry t
    WHERE t.device_id = %(device)s AND t.time >= %(start)s AND t.time < %(end)s {metric_filter}
    ORDER BY t.time {direction}
"""
AGGREGATE_STATISTICS = ("count", "min", "max", "avg", "sum")


def telemetry_export(*, device, start, end, metrics=None, ascending=False):
    """Raw readings as CSV rows: ``timestamp`` then one column per metric (``metrics`` in their order)."""
    params = {"device": device.pk, "start": start, "end": end, "metrics": list(metrics or ())}

    def produce(connection):
        names = list(metrics or ())
        if not names:
            with connection.cursor() as cursor:
                cursor.execute(_READING_METRICS_SQL, params)
                names = [name for (name,) in cursor.fetchall()]
        query = sql.SQL(_READINGS_SQL).format(
            columns=sql.SQL("").join(sql.SQL(", t.metrics ->> {}").format(sql.Literal(name)) for name in names),
            metric_filter=sql.SQL("AND t.metrics ?| %(metrics)s" if metrics else ""),
            direction=sql.SQL("ASC" if ascending else "DESC"),
        )
        rows = server_side_rows(connection, query.as_string(connection.connection), params)
        return ["timestamp", *names], rows

    return produce


def telemetry_aggregate_export(*, device, start, end, interval, metrics=None):
    """Aggregates as CSV rows: ``bucket``, then ``<metric>:count``, ``:min``, ``:max``, ``:avg``, ``:sum`` per
    metric, one row per bucket."""
    query, params = _aggregate_query(device=device, start=start, end=end, interval=interval, metrics=metrics)

    def produce(connection):
        text = query.as_string(connection.connection)
        names = list(metrics or ())
        if not names:
            with connection.cursor() as cursor:
                cursor.execute(
                    f'SELECT DISTINCT q.metric COLLATE "C" FROM ({text}) AS q(b, metric, c, lo, hi, s) ORDER BY 1',
                    params,
                )
                names = [name for (name,) in cursor.fetchall()]
        header = ["bucket", *(f"{name}:{statistic}" for name in names for statistic in AGGREGATE_STATISTICS)]
        return header, _bucket_rows(server_side_rows(connection, text, params), names)

    return produce


def _bucket_rows(rows, names):
    """One row per bucket from the aggregate query's rows (ordered by bucket, then metric)."""
    offsets = {name: index * len(AGGREGATE_STATISTICS) for index, name in enumerate(names)}
    bucket = cells = None
    for row_bucket, metric, count, low, high, total in rows:
        if row_bucket != bucket:
            if cells is not None:
                yield [utc_iso(bucket), *cells]
            bucket, cells = row_bucket, [None] * len(offsets) * len(AGGREGATE_STATISTICS)
        offset = offsets.get(metric)
        if offset is not None:
            cells[offset : offset + len(AGGREGATE_STATISTICS)] = [count, low, high, total / count, total]
    if cells is not None:
        yield [utc_iso(bucket), *cells]
