"""The community (TSL) edition end to end: real-time continuous aggregates, each policy run by ``run_job``, late data,
compression, retention, rules and device deletion over compressed chunks.

The counterpart of test_rollups.py for the Apache build. Every policy is run explicitly (``CALL run_job``, job ids
from ``timescaledb_information.jobs``), every refresh called explicitly: the policies are applied for real but
paused, so TimescaleDB's background scheduler never runs one behind a test's back. A test whose policy or aggregate
is missing fails (a missing job is a KeyError), it never skips. Policy tests commit; ``paused_policies`` puts the
database back as the migrations left it (no policy, compression off, no chunk, no materialized row, watermarks
reset), because the rest of the suite inserts readings near now and expects them in the real-time part.
"""

import random
import re
from datetime import timedelta
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.db import connection
from psycopg2 import sql

from iothub.worker import registry
from rules.models import Event, Notification, NotificationStatus
from telemetry import tasks, timescale
from telemetry.ingest.services import InvalidReadings, reading_ingest
from telemetry.models import Telemetry
from tests.factories import DeviceFactory, NotificationChannelFactory, RuleFactory, insert_readings
from tests.telemetry.test_aggregates import aggregate_url, expected, generate_readings, iso, rows_of
from tests.telemetry.test_policies import DEFAULTS, _apply, _policies
from tests.telemetry.test_rollups import want_rows

pytestmark = pytest.mark.tsl

WIDTHS = {"telemetry_1m": timedelta(minutes=1), "telemetry_1h": timedelta(hours=1), "telemetry_1d": timedelta(days=1)}
REFRESH, RETENTION, COMPRESSION = "policy_refresh_continuous_aggregate", "policy_retention", "policy_compression"
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


@pytest.fixture(autouse=True)
def _default_settings(settings):
    for name, value in DEFAULTS.items():
        setattr(settings, name, value)


def _now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def _day(moment):
    """The start of the UTC day holding ``moment``."""
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _execute(query, params=None):
    with connection.cursor() as cursor:
        cursor.execute(query, params)


def run_job(relation, proc_name):
    """Runs the relation's policy now, in the foreground, as the scheduler would; KeyError when it is missing."""
    _execute("CALL run_job(%s)", [_policies()[(relation, proc_name)]["job_id"]])


def refresh(view, start, end):
    _execute("CALL refresh_continuous_aggregate(%s, %s, %s)", [view, start, end])


def refresh_all(start=None, end=None):
    """Every level over ``[start, end)`` (None: unbounded), from the source up, as a DBA backfilling would."""
    for view in WIDTHS:
        refresh(view, start, end)


def materialized(view, device):
    """The rows of ``view`` stored for ``device`` in its materialization hypertable (not the real-time part)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT materialization_hypertable_schema, materialization_hypertable_name"
            " FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
            [view],
        )
        table = sql.SQL("{}.{}").format(*map(sql.Identifier, cursor.fetchone()))
        cursor.execute(
            sql.SQL(
                "SELECT bucket, metric, count, min, max, sum FROM {} WHERE device_id = %s"
                ' ORDER BY bucket, metric COLLATE "C"'
            ).format(table),
            [device.id],
        )
        return [
            {"bucket": iso(bucket), "metric": metric, "count": count, "min": low, "max": high, "sum": total}
            for bucket, metric, count, low, high, total in cursor.fetchall()
        ]


def watermark(view):
    """The aggregate's watermark, or None while nothing is materialized (its watermark is then in 4714 BC)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CASE WHEN w >= 0 THEN _timescaledb_functions.to_timestamp(w) END"
            " FROM _timescaledb_catalog.continuous_agg,"
            " LATERAL _timescaledb_functions.cagg_watermark(mat_hypertable_id) AS w WHERE user_view_name = %s",
            [view],
        )
        return cursor.fetchone()[0]


def telemetry_chunks():
    """``[(range_start, range_end, is_compressed)]`` of the telemetry hypertable, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT range_start, range_end, is_compressed FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'telemetry' ORDER BY range_start"
        )
        return cursor.fetchall()


def assert_views_equal(readings, device):
    for view, width in WIDTHS.items():
        assert rows_of(view, device) == want_rows(readings, width), view


def _clean_tsl_state():
    with connection.cursor() as cursor:
        for aggregate in reversed(timescale.AGGREGATES):
            cursor.execute("SELECT remove_continuous_aggregate_policy(%s, if_exists => true)", [aggregate.name])
            cursor.execute("SELECT remove_retention_policy(%s, if_exists => true)", [aggregate.name])
        cursor.execute("SELECT remove_retention_policy('telemetry', if_exists => true)")
        cursor.execute("SELECT remove_compression_policy('telemetry', if_exists => true)")
        # Compression can be switched off only without compressed chunks: truncating drops them all (the flush
        # after this test would empty the table anyway).
        cursor.execute("TRUNCATE telemetry")
        cursor.execute("ALTER TABLE telemetry SET (timescaledb.compress = false)")
        # Truncating a continuous aggregate also resets its watermark (TimescaleDB >= 2.15).
        for aggregate in reversed(timescale.AGGREGATES):
            cursor.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(aggregate.name)))


@pytest.fixture
def paused_policies(transactional_db):
    """The policies of the default settings applied and committed, each job paused (``run_job`` still runs it);
    afterwards no policy, compression off, no chunk and no materialized row, every watermark reset."""
    _apply()
    for policy in _policies().values():
        _execute("SELECT alter_job(%s, scheduled => false)", [policy["job_id"]])
    yield
    _clean_tsl_state()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = ANY(%s)", [[REFRESH]])
        assert cursor.fetchone() == (0,)
    assert [watermark(view) for view in WIDTHS] == [None, None, None]


# Real-time aggregation: fresh readings at once, late ones only once refreshed.


@pytest.mark.django_db
def test_fresh_readings_are_in_every_aggregate_before_any_refresh(viewer_client):
    device = DeviceFactory()
    now = _now()
    readings = generate_readings(now - timedelta(hours=3), now, timedelta(seconds=53), random.Random(11))
    insert_readings(device, readings)

    for view in WIDTHS:
        assert materialized(view, device) == []  # nothing stored: all of it is computed at query time
    assert_views_equal(readings, device)
    start, end = _day(now) - DAY, _day(now) + DAY
    for interval, width in (("1m", MINUTE), ("1h", HOUR), ("1d", DAY)):
        params = {"start": iso(start), "end": iso(end), "interval": interval}
        response = viewer_client.get(aggregate_url(device), params)
        assert response.json()["results"] == expected(readings, start, end, width), interval


def _refresh_late_data():
    timescale.refresh_late_data(**timescale.configured())


def _worker_task():
    registry.periodic_tasks["refresh_late_telemetry"].func()
    assert registry.periodic_tasks["refresh_late_telemetry"].func is tasks.refresh_late_telemetry


def _refresh_command():
    out = StringIO()
    call_command("refresh_aggregates", stdout=out)
    for view in WIDTHS:
        assert re.search(rf"^{view}: refreshed from \S+ to \S+$", out.getvalue(), re.MULTILINE)


@pytest.mark.parametrize("catch_up", [_refresh_late_data, _worker_task, _refresh_command], ids=lambda f: f.__name__)
def test_a_late_reading_below_the_watermarks_appears_only_once_the_late_data_is_refreshed(paused_policies, catch_up):
    device = DeviceFactory()
    now = _now()
    readings = generate_readings(
        now - timedelta(days=3), now - timedelta(minutes=2), timedelta(minutes=17), random.Random(4)
    )
    insert_readings(device, readings)
    for aggregate in timescale.AGGREGATES:
        run_job(aggregate.name, REFRESH)
    timescale.refresh_late_data(**timescale.configured())  # the history before the policies existed
    assert_views_equal(readings, device)

    # Four days old: below every watermark, outside every refresh policy's window.
    late = [(_day(now) - timedelta(days=4) + timedelta(hours=7, seconds=5), {"temp": 1234.5, "hum": 7})]
    assert all(watermark(view) > late[0][0] for view in WIDTHS)
    insert_readings(device, late)
    for aggregate in timescale.AGGREGATES:
        run_job(aggregate.name, REFRESH)
    assert_views_equal(readings, device)  # not in any level, not even computed at query time

    catch_up()

    assert_views_equal(readings + late, device)


@pytest.mark.django_db
def test_the_apache_rollup_task_does_nothing_with_tsl():
    """The worker registers it on both editions; with TSL the refresh policies do its job."""
    task = registry.periodic_tasks["refresh_telemetry_rollups"]
    assert task.func is tasks.refresh_telemetry_rollups
    assert task.func() is None


# Each refresh policy run with run_job: the buckets wholly inside its window, from what the level below stored.


def test_the_1m_refresh_policy_materializes_the_last_two_hours_from_raw_readings(paused_policies):
    device = DeviceFactory()
    now = _now()
    inside = [(now - timedelta(minutes=30), {"t": 1.5}), (now - timedelta(minutes=30, seconds=-20), {"t": 2})]
    outside = [(now - timedelta(hours=5), {"t": 4})]
    insert_readings(device, inside + outside)

    run_job("telemetry_1m", REFRESH)

    assert materialized("telemetry_1m", device) == want_rows(inside, MINUTE)
    assert outside[0][0] < watermark("telemetry_1m") <= now
    # Below the watermark and never materialized: the reading five hours old is seen by no level until the
    # late-data refresh (test above). The levels above are not refreshed by this policy.
    assert rows_of("telemetry_1m", device) == want_rows(inside, MINUTE)
    assert materialized("telemetry_1h", device) == materialized("telemetry_1d", device) == []


def test_the_1h_refresh_policy_materializes_two_days_from_what_the_1m_level_stored(paused_policies):
    device = DeviceFactory()
    now = _now()
    inside = [(now - timedelta(hours=5), {"t": 1.25}), (now - timedelta(hours=30), {"t": -3})]
    outside = [(now - timedelta(days=3), {"t": 8})]
    insert_readings(device, inside + outside)
    refresh("telemetry_1m", now - timedelta(days=4), now - HOUR)  # the level below, up to date
    unstored = [(now - timedelta(hours=7), {"t": 100})]  # arrives after the 1m level was refreshed
    insert_readings(device, unstored)

    run_job("telemetry_1h", REFRESH)

    # The hourly policy reads the 1m level's stored buckets, not raw readings: the reading the 1m level has not
    # stored yet is missing (refresh_late_data therefore refreshes the levels in order).
    assert materialized("telemetry_1h", device) == want_rows(inside, HOUR)
    assert materialized("telemetry_1d", device) == []


def test_the_1d_refresh_policy_materializes_three_days_from_what_the_1h_level_stored(paused_policies):
    device = DeviceFactory()
    today = _day(_now())
    # The day before yesterday is always wholly inside [now - 3 days, now - 1 hour]; five days ago never is.
    inside = [(today - 2 * DAY + timedelta(hours=3), {"t": 2.5}), (today - 2 * DAY + timedelta(hours=20), {"t": 1})]
    outside = [(today - 5 * DAY + timedelta(hours=3), {"t": 9})]
    insert_readings(device, inside + outside)
    refresh("telemetry_1m", today - 6 * DAY, today)
    refresh("telemetry_1h", today - 6 * DAY, today)

    run_job("telemetry_1d", REFRESH)

    assert materialized("telemetry_1d", device) == want_rows(inside, DAY)


# Retention and compression, each run with run_job.


def test_retention_drops_raw_and_1m_chunks_older_than_90_days_and_keeps_hourly_and_daily_buckets(paused_policies):
    device = DeviceFactory()
    now = _now()
    readings = [(now - timedelta(days=days, hours=3), {"t": float(days)}) for days in (120, 100, 80, 1)]
    insert_readings(device, readings)
    refresh_all(None, now - HOUR)
    hourly, daily = rows_of("telemetry_1h", device), rows_of("telemetry_1d", device)
    assert hourly == want_rows(readings, HOUR)

    run_job("telemetry", RETENTION)

    kept = [reading for reading in readings if reading[0] > now - timedelta(days=90)]
    assert sorted(Telemetry.objects.filter(device=device).values_list("time", flat=True)) == [t for t, _ in kept]
    assert all(end > now - timedelta(days=90) for _start, end, _compressed in telemetry_chunks())
    assert rows_of("telemetry_1m", device) == want_rows(readings, MINUTE)  # the 1m level has its own policy

    run_job("telemetry_1m", RETENTION)
    for view in ("telemetry_1h", "telemetry_1d"):
        run_job(view, RETENTION)  # 730 days: nothing to drop

    # 10-day chunks: the 1m level drops the buckets 100 and 120 days old, keeps 80 days and newer.
    assert rows_of("telemetry_1m", device) == want_rows(kept, MINUTE)
    assert rows_of("telemetry_1h", device) == hourly
    assert rows_of("telemetry_1d", device) == daily
    # The late-data refresh stays inside what the raw data keeps: it never recomputes the dropped days to nothing.
    timescale.refresh_late_data(**timescale.configured())
    assert rows_of("telemetry_1h", device) == hourly
    assert rows_of("telemetry_1d", device) == daily


@pytest.fixture
def compressed(paused_policies):
    """Two devices' readings over 20 days, then the compression policy run: chunks older than 7 days compressed,
    nothing materialized yet. Returns ``(devices, readings per device, now)``."""
    devices = [DeviceFactory(), DeviceFactory()]
    now = _now()
    readings = {}
    for index, device in enumerate(devices):
        readings[device] = generate_readings(
            now - timedelta(days=20), now - timedelta(minutes=5), timedelta(hours=2, minutes=13), random.Random(index)
        )
        insert_readings(device, readings[device])
    assert not any(is_compressed for _start, _end, is_compressed in telemetry_chunks())
    run_job("telemetry", COMPRESSION)
    return devices, readings, now


def test_the_compression_policy_compresses_exactly_the_chunks_older_than_7_days(compressed):
    _devices, _readings, now = compressed
    chunks = telemetry_chunks()
    assert [is_compressed for _start, end, is_compressed in chunks] == [
        end <= now - timedelta(days=7) for _start, end, _compressed in chunks
    ]
    assert 10 <= sum(is_compressed for _start, _end, is_compressed in chunks) < len(chunks)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT compression_status, count(*), bool_and(after_compression_total_bytes > 0)"
            " FROM chunk_compression_stats('telemetry') GROUP BY 1 ORDER BY 1"
        )
        stats = {status: (count, sized) for status, count, sized in cursor.fetchall()}
    assert stats["Compressed"] == (sum(compressed for _s, _e, compressed in chunks), True)


def test_aggregates_over_compressed_chunks_equal_the_raw_readings(compressed, viewer_client):
    devices, readings, now = compressed
    for device in devices:
        assert_views_equal(readings[device], device)  # computed at query time from the compressed chunks

    timescale.refresh_late_data(**timescale.configured())  # materialized from them

    for device in devices:
        assert materialized("telemetry_1m", device) == want_rows(readings[device], MINUTE)
        assert materialized("telemetry_1d", device)
        assert_views_equal(readings[device], device)
        start, end = _day(now) - 21 * DAY, _day(now) + DAY
        for interval, width in (("15m", 15 * MINUTE), ("6h", 6 * HOUR), ("1d", DAY)):
            params = {"start": iso(start), "end": iso(end), "interval": interval}
            results = viewer_client.get(aggregate_url(device), params).json()["results"]
            assert results == expected(readings[device], start, end, width), interval


def _ingest(device, time, metrics):
    """Through ingest's service, as the API calls it: ``(accepted, merged, duplicates)``."""
    return reading_ingest(payload={"device_id": str(device.id), "timestamp": iso(time), "metrics": metrics})


def _chunk_of(time):
    return next(is_compressed for start, end, is_compressed in telemetry_chunks() if start <= time < end)


def test_a_reading_into_a_compressed_chunk_fires_rules_and_reaches_the_aggregates(compressed):
    (device, _other), readings, now = compressed
    channel = NotificationChannelFactory()
    rule = RuleFactory(metric="temp", threshold=30, channels=[channel])
    late = now - timedelta(days=10, seconds=7)
    assert _chunk_of(late)

    assert _ingest(device, late, {"temp": 45.5}) == (1, 0, 0)

    event = Event.objects.get(rule=rule, device=device)
    assert (event.triggered_at, event.occurrence_count) == (late, 1)
    assert list(Notification.objects.filter(event=event).values_list("channel", "status")) == [
        (channel.id, NotificationStatus.PENDING)
    ]
    timescale.refresh_late_data(**timescale.configured())
    assert_views_equal([*readings[device], (late, {"temp": 45.5})], device)


def test_readings_of_a_compressed_reading_s_device_and_time_are_duplicates_merged_or_refused(compressed):
    (device, _other), readings, _now = compressed
    temp = RuleFactory(metric="temp", threshold=-1000)
    humidity = RuleFactory(metric="humidity", threshold=30)
    time, metrics = next((time, metrics) for time, metrics in readings[device] if "temp" in metrics and _chunk_of(time))

    # The same reading adds nothing: a duplicate, evaluated by no rule.
    assert _ingest(device, time, metrics) == (0, 0, 1)
    # One sharing a metric with another value: refused, nothing stored.
    with pytest.raises(InvalidReadings) as refused:
        _ingest(device, time, {"temp": metrics["temp"] + 1, "humidity": 45.0})
    assert (refused.value.status, [error["pointer"] for error in refused.value.errors]) == (409, ["/metrics/temp"])
    # One adding a metric merges into the compressed chunk's row; only the new metric is evaluated.
    assert _ingest(device, time, {"humidity": 45.0}) == (0, 1, 0)

    merged = {**metrics, "humidity": 45.0}
    assert list(Telemetry.objects.filter(device=device, time=time).values_list("metrics", flat=True)) == [merged]
    assert not Event.objects.filter(rule=temp).exists()
    assert Event.objects.get(rule=humidity).triggered_at == time
    timescale.refresh_late_data(**timescale.configured())
    assert_views_equal([(t, merged if t == time else m) for t, m in readings[device]], device)


def test_deleting_a_device_deletes_its_readings_from_compressed_chunks_and_its_buckets_after_a_refresh(compressed):
    (device, other), readings, now = compressed
    gone = SimpleNamespace(id=device.id)  # Django clears the instance's id on delete
    timescale.refresh_late_data(**timescale.configured())
    assert Telemetry.objects.filter(device=device, time__lt=now - timedelta(days=10)).exists()
    assert rows_of("telemetry_1d", gone)

    device.delete()

    assert not Telemetry.objects.filter(device_id=gone.id).exists()
    assert Telemetry.objects.filter(device=other).count() == len(readings[other])
    assert any(is_compressed for _start, _end, is_compressed in telemetry_chunks())
    timescale.refresh_late_data(**timescale.configured())
    for view in WIDTHS:
        assert rows_of(view, gone) == [], view
    assert_views_equal(readings[other], other)


# The management commands on TSL.


def test_timescale_status_shows_compressed_chunks_watermarks_and_the_jobs(compressed):
    timescale.refresh_late_data(**timescale.configured())
    compressed_chunks = sum(is_compressed for _start, _end, is_compressed in telemetry_chunks())
    out = StringIO()
    call_command("timescale_status", stdout=out)
    output = out.getvalue()

    assert "edition timescale (policies, compression, continuous aggregates)" in output
    hypertable = r'^  telemetry: \d+ chunks, .+, compression on \(segment by device_id, order by "time" DESC\)$'
    assert re.search(hypertable, output, re.MULTILINE), output
    assert re.search(rf"^  telemetry: \d+ chunks from .+, {compressed_chunks} compressed$", output, re.MULTILINE)
    for view in WIDTHS:
        moment = watermark(view).strftime("%Y-%m-%d %H:%M:%S")
        assert f"  {view}: continuous aggregate, real-time, watermark {moment} UTC" in output
    jobs = _policies()
    assert len(jobs) == 8
    for (relation, proc_name), job in jobs.items():
        assert re.search(rf"^  \[{job['job_id']}\] .+: {proc_name} on {relation}, every ", output, re.MULTILINE)
    assert '"compress_after": "7 days"' in output


def test_apply_timescale_policies_over_compressed_chunks_replaces_only_the_compression_policy(compressed):
    before = _policies()
    out = _apply(TELEMETRY_COMPRESS_AFTER_DAYS=3)
    after = _policies()

    assert out.strip() == "telemetry: compression policy (compress_after 3 days) replaced"
    assert {key for key in after if after[key]["job_id"] != before[key]["job_id"]} == {("telemetry", COMPRESSION)}
    assert after[("telemetry", COMPRESSION)]["compress_after"] == 3 * DAY
    assert _apply().strip() == "telemetry: compression policy (compress_after 7 days) replaced"
    assert _apply().strip() == "TimescaleDB policies already match the settings: nothing changed."
    assert any(is_compressed for _start, _end, is_compressed in telemetry_chunks())
