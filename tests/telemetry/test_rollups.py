"""The Apache build's rollups behind telemetry_1m/1h/1d (sql/history/telemetry/0005_apache_rollups.apache.sql).

Stored closed buckets below a watermark, the rest computed from raw readings at query time, late readings logged by
a trigger and recomputed by ``telemetry_rollup.refresh()``. Every refresh here is called explicitly. Tests that
commit (``transaction=True``) put the rollups back as the migration left them: the other tests insert readings in
the past and expect no watermark above them.
"""

import random
import threading
from datetime import UTC, datetime, timedelta
from io import StringIO

import psycopg2
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from iothub.worker import registry
from telemetry import tasks, timescale
from telemetry.buckets import aggregate_buckets
from telemetry.models import Telemetry
from telemetry.selectors import telemetry_aggregate
from tests.factories import DeviceFactory, insert_readings
from tests.telemetry.test_aggregates import EPOCH, expected, generate_readings, iso, rows_of

STORES = ["telemetry_rollup.store_1m", "telemetry_rollup.store_1h", "telemetry_rollup.store_1d"]
WIDTHS = {"telemetry_1m": timedelta(minutes=1), "telemetry_1h": timedelta(hours=1), "telemetry_1d": timedelta(days=1)}
SETTINGS = {
    "TELEMETRY_RETENTION_DAYS": 30,
    "TELEMETRY_COMPRESS_AFTER_DAYS": 7,
    "TELEMETRY_AGGREGATE_RETENTION_DAYS": 730,
}


@pytest.fixture(autouse=True)
def _apache_only(timescaledb_edition):
    if timescaledb_edition != "apache":
        pytest.skip("the Apache build's rollups; with TSL the aggregates are continuous aggregates")


def _reset_rollups():
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE telemetry_rollup.invalidations, {', '.join(STORES)}")
        cursor.execute(
            "UPDATE telemetry_rollup.state SET watermark = '-infinity', threshold = '-infinity',"
            " pending_watermark = NULL, fence = NULL, refreshed_at = NULL"
        )


@pytest.fixture
def committed_rollups(transactional_db):
    """For tests that commit: the rollups start and end as the migration left them."""
    _reset_rollups()
    yield
    _reset_rollups()


def _now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def refresh(**kwargs):
    """``telemetry_rollup.refresh()`` as a DBA or the worker calls it; returns the state afterwards."""
    arguments = {"wait_for_writers": True, **kwargs}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM telemetry_rollup.refresh({})".format(", ".join(f"{name} => %s" for name in arguments)),
            list(arguments.values()),
        )
    return state()


def state():
    return timescale.rollup_state()


def invalidations():
    with connection.cursor() as cursor:
        cursor.execute("SELECT device_id, low, high FROM telemetry_rollup.invalidations ORDER BY low, device_id")
        return cursor.fetchall()


def store_rows(store, device):
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT bucket, metric, count, min, max, sum FROM {store} WHERE device_id = %s ORDER BY 1, 2",
            [device.id],
        )
        return [
            {"bucket": iso(bucket), "metric": metric, "count": count, "min": low, "max": high, "sum": total}
            for bucket, metric, count, low, high, total in cursor.fetchall()
        ]


def want_rows(readings, width):
    """What a view must hold for these readings: one row per bucket and numeric metric."""
    everything = expected(readings, EPOCH, datetime(3000, 1, 1, tzinfo=UTC), width)
    return [{k: v for k, v in bucket.items() if k != "avg"} for bucket in everything]


def assert_views_equal(readings, device):
    for view, width in WIDTHS.items():
        assert rows_of(view, device) == want_rows(readings, width), view


@pytest.fixture
def device(db):
    return DeviceFactory()


@pytest.fixture
def three_days(device):
    """Readings about every 97 s over the three days before now, with non-numeric metrics too."""
    now = _now()
    readings = generate_readings(now - timedelta(days=3), now, timedelta(seconds=97), random.Random(5))
    insert_readings(device, readings)
    return readings


def test_after_a_refresh_the_views_read_the_stores_and_equal_the_raw_data(device, three_days):
    assert state()["watermark"].year == 1  # -infinity: nothing stored yet, everything computed from raw
    assert_views_equal(three_days, device)

    after = refresh()

    watermark = after["watermark"]
    assert _now() - timedelta(minutes=6) <= watermark <= _now() - timedelta(minutes=5)
    assert after["threshold"] >= watermark
    # The stores hold exactly the closed buckets, and the views still equal the readings.
    closed = [r for r in three_days if r[0] < watermark]
    assert store_rows(STORES[0], device) == want_rows(closed, WIDTHS["telemetry_1m"])
    hour = EPOCH + (watermark - EPOCH) // timedelta(hours=1) * timedelta(hours=1)
    assert store_rows(STORES[1], device) == want_rows([r for r in closed if r[0] < hour], timedelta(hours=1))
    day = EPOCH + (watermark - EPOCH) // timedelta(days=1) * timedelta(days=1)
    assert store_rows(STORES[2], device) == want_rows([r for r in closed if r[0] < day], timedelta(days=1))
    assert store_rows(STORES[2], device)  # three days: at least two closed days
    assert_views_equal(three_days, device)

    # Through the selector the API uses: 1 h over the three days and 1 d, re-bucketed exactly.
    for interval in (timedelta(hours=1), timedelta(hours=6), timedelta(days=1), timedelta(minutes=15)):
        start, end = _now() - timedelta(days=4), _now()
        first, stop, _ = aggregate_buckets(start=start, end=end, interval=interval)
        got = telemetry_aggregate(device=device, start=start, end=end, interval=interval)
        assert [{**b, "bucket": iso(b["bucket"])} for b in got] == expected(three_days, first, stop, interval)


def test_refresh_is_idempotent(device, three_days):
    refresh()
    stored = [store_rows(store, device) for store in STORES]
    first = state()

    again = refresh()

    assert [store_rows(store, device) for store in STORES] == stored
    assert {k: again[k] for k in ("watermark", "threshold", "invalidations")} == {
        k: first[k] for k in ("watermark", "threshold", "invalidations")
    }


def test_readings_above_the_watermark_are_visible_before_any_refresh(device, three_days):
    refresh()
    now = _now()
    fresh = [(now - timedelta(seconds=30), {"temp": 99.5}), (now - timedelta(seconds=5), {"temp": -3})]

    insert_readings(device, fresh)

    assert invalidations() == []  # not late: nothing to recompute
    assert_views_equal(three_days + fresh, device)


def test_late_readings_are_logged_and_correct_after_the_next_refresh(device, three_days):
    refresh()
    now = _now()
    # Anchored to UTC days, not to now: the log keeps one row per device and day, and two readings 21 hours apart
    # fall on the same day when the test runs in the first hours of one.
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    other = DeviceFactory()
    late = [
        (day - timedelta(days=2) + timedelta(hours=12, seconds=13), {"temp": 1000.0, "hum": -1}),
        (day - timedelta(days=1) + timedelta(hours=12, seconds=7), {"temp": -1000.0}),
    ]

    insert_readings(device, late)
    insert_readings(other, [(now - timedelta(hours=2), {"x": 1})])

    # One row per device, statement and UTC day: its oldest and newest late reading of that day.
    assert invalidations() == sorted(
        [
            (device.id, late[0][0], late[0][0]),
            (device.id, late[1][0], late[1][0]),
            (other.id, now - timedelta(hours=2), now - timedelta(hours=2)),
        ],
        key=lambda row: (row[1], row[0]),
    )
    # Until the next refresh the stores (and so the views below the watermark) don't have them.
    assert rows_of("telemetry_1d", device) == want_rows(three_days, WIDTHS["telemetry_1d"])

    result = refresh()

    assert result["invalidations"] == 0
    assert_views_equal(three_days + late, device)
    assert rows_of("telemetry_1h", other) == want_rows([(now - timedelta(hours=2), {"x": 1})], timedelta(hours=1))


def test_one_statement_s_late_readings_weeks_apart_recompute_their_days_not_the_weeks_between(device):
    refresh()
    now = _now()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    old = [(day - timedelta(days=29, hours=-3), {"t": 1.0}), (day - timedelta(days=29, hours=-20), {"t": 3.0})]
    recent = [(day - timedelta(days=1, hours=-8), {"t": 2.0})]
    between = [(day - timedelta(days=15), {"t": 5.0})]  # stored by an earlier refresh; must stay as it is
    insert_readings(device, between)
    refresh()

    insert_readings(device, old + recent)  # one statement

    assert invalidations() == [(device.id, old[0][0], old[1][0]), (device.id, recent[0][0], recent[0][0])]
    # The buckets of the days between are not recomputed: a bucket written there by hand stays as it is.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE telemetry_rollup.store_1m SET sum = 50 WHERE device_id = %s", [device.id])
    result = refresh()
    assert result["invalidations"] == 0
    assert [row["sum"] for row in store_rows(STORES[0], device)] == [1.0, 3.0, 50, 2.0]
    assert rows_of("telemetry_1d", device)[0] == want_rows(old, WIDTHS["telemetry_1d"])[0]


def test_a_deleted_device_takes_its_rollups(device, three_days):
    refresh()
    keep = DeviceFactory()
    insert_readings(keep, [(_now() - timedelta(days=1), {"t": 1})])
    refresh()

    device.delete()

    for store in STORES:
        assert store_rows(store, device) == []
    assert store_rows(STORES[1], keep) != []


def test_the_refresh_command_and_startup_refresh_the_rollups(device, three_days):
    out = StringIO()
    call_command("refresh_aggregates", stdout=out)
    assert "rollups: watermark " in out.getvalue()
    assert state()["watermark"].year > 1

    insert_readings(device, [(_now() - timedelta(days=1), {"temp": 5000})])
    out = StringIO()
    call_command("apply_timescale_policies", stdout=out)
    assert "1 span(s) of late readings recomputed" in out.getvalue()
    assert_views_equal([*three_days, (_now() - timedelta(days=1), {"temp": 5000})], device)


def test_timescale_status_shows_the_watermark_and_waiting_invalidations(device, three_days):
    refresh()
    insert_readings(device, [(_now() - timedelta(days=1), {"temp": 1})])
    out = StringIO()
    call_command("timescale_status", stdout=out)
    output = out.getvalue()
    assert "telemetry_1h: plain view: closed buckets from telemetry_rollup.store_1h" in output
    assert "Rollups (Apache build" in output
    assert "invalidations waiting: 1, oldest reading " in output


# Retention: each store keeps what its aggregate keeps; dropping raw chunks never loses a kept bucket.


@override_settings(**SETTINGS)
def test_retention_prunes_each_store_by_its_own_retention_and_keeps_hourly_and_daily_buckets(device):
    now = _now()
    readings = [(now - timedelta(hours=6 * step, minutes=7), {"t": float(step)}) for step in range(400)]
    insert_readings(device, readings)
    refresh(raw_retention=timedelta(days=30))
    hourly_before = rows_of("telemetry_1h", device)
    daily_before = rows_of("telemetry_1d", device)
    assert hourly_before == want_rows(readings, timedelta(hours=1))

    dropped = timescale.enforce_retention(**timescale.configured())

    raw_cutoff = now - timedelta(days=30)
    assert dropped["telemetry"]
    assert dropped["telemetry_rollup.store_1m"]
    assert dropped["telemetry_rollup.store_1h"] == dropped["telemetry_rollup.store_1d"] == []
    assert not Telemetry.objects.filter(time__lt=raw_cutoff - timedelta(days=1)).exists()
    # 1 minute keeps the raw retention; 1 hour and 1 day keep every bucket, though their readings are gone.
    assert all(row["bucket"] >= iso(raw_cutoff - timedelta(days=1)) for row in rows_of("telemetry_1m", device))
    assert rows_of("telemetry_1h", device) == hourly_before
    assert rows_of("telemetry_1d", device) == daily_before

    # A reading older than the raw retention arrives: logged, but its buckets are never recomputed from what is
    # left of their readings (it alone), and the log entry is discarded.
    old = now - timedelta(days=60)
    insert_readings(device, [(old, {"t": 1e6})])
    assert len(invalidations()) == 1
    refresh()
    assert invalidations() == []
    assert rows_of("telemetry_1h", device) == hourly_before
    assert rows_of("telemetry_1d", device) == daily_before

    # The hourly and daily stores drop their chunks entirely older than the aggregate retention.
    with override_settings(TELEMETRY_AGGREGATE_RETENTION_DAYS=40):
        dropped = timescale.enforce_retention(**timescale.configured())
    assert dropped["telemetry_rollup.store_1h"]
    cutoff = iso(now - timedelta(days=40 + 30))  # whole 30-day chunks
    assert all(row["bucket"] >= cutoff for row in rows_of("telemetry_1h", device))


def test_enforce_retention_command_reports_the_stores(device):
    insert_readings(device, [(_now() - timedelta(days=100), {"t": 1})])
    refresh()
    out = StringIO()
    with override_settings(**SETTINGS):
        call_command("enforce_retention", stdout=out)
    assert "telemetry_rollup.store_1m: 1 chunk(s) older than 30 days dropped" in out.getvalue()
    assert "telemetry_rollup.store_1h: 0 chunk(s) older than 730 days dropped" in out.getvalue()


# The worker, and writers and refreshes running at the same time (these commit).


def test_the_worker_refreshes_the_rollups_every_minute_from_its_start():
    task = registry.periodic_tasks["refresh_telemetry_rollups"]
    assert task.func is tasks.refresh_telemetry_rollups
    assert task.every == timedelta(minutes=1)
    assert task.run_at_start


def _connect():
    return psycopg2.connect(**connection.get_connection_params())


@pytest.mark.django_db(transaction=True)
def test_the_worker_task_catches_up_lock_free(committed_rollups, device):
    now = _now()
    readings = generate_readings(now - timedelta(days=3), now, timedelta(minutes=3), random.Random(9))
    insert_readings(device, readings)

    # First run: raises the threshold. Second: sets the fence. Third: every writer older than the fence has
    # ended, so the watermark moves, in steps of a day, to the first threshold.
    for _ in range(3):
        tasks.refresh_telemetry_rollups()

    current = state()
    assert current["watermark"] >= now - timedelta(minutes=6)
    assert current["watermark"] <= current["threshold"]
    assert_views_equal(readings, device)
    assert store_rows(STORES[2], device)


@pytest.mark.django_db(transaction=True)
def test_concurrent_late_inserts_do_not_wait_for_each_other(committed_rollups, device):
    now = _now()
    # The day's chunk exists already: creating a chunk makes concurrent writers to it wait (TimescaleDB's own).
    insert_readings(DeviceFactory(), [(now - timedelta(days=1, minutes=1), {"t": 0})])
    refresh()
    other = DeviceFactory()
    first, second = _connect(), _connect()
    try:
        with first.cursor() as a, second.cursor() as b:
            b.execute("SET lock_timeout = '2s'")
            a.execute(
                "INSERT INTO telemetry (device_id, time, metrics) VALUES (%s, %s, '{\"t\": 1}')",
                [device.id, now - timedelta(days=1)],
            )
            # The first transaction is still open, its invalidation row written: the second is not held up.
            b.execute(
                "INSERT INTO telemetry (device_id, time, metrics) VALUES (%s, %s, '{\"t\": 2}')",
                [other.id, now - timedelta(days=1)],
            )
            second.commit()
            # Neither does a lock-free refresh wait for the open writer.
            b.execute("SELECT * FROM telemetry_rollup.refresh()")
            second.commit()
            first.commit()
    finally:
        first.close()
        second.close()
    assert {device_id for device_id, _, _ in invalidations()} == {device.id}  # the other's was consumed
    refresh()
    assert rows_of("telemetry_1h", device) == want_rows([(now - timedelta(days=1), {"t": 1})], timedelta(hours=1))
    assert rows_of("telemetry_1h", other) == want_rows([(now - timedelta(days=1), {"t": 2})], timedelta(hours=1))


@pytest.mark.django_db(transaction=True)
def test_the_watermark_never_passes_a_reading_of_a_writer_still_running(committed_rollups, device):
    """A writer that read the old threshold (so logged nothing) and commits after the threshold has moved past
    its reading: the lock-free refresh does not move the watermark past it until the writer has ended."""
    refresh()
    writer = _connect()
    try:
        with writer.cursor() as cursor:
            when = _now() - timedelta(minutes=2)  # above the threshold (5 minutes behind): not late
            cursor.execute(
                "INSERT INTO telemetry (device_id, time, metrics) VALUES (%s, %s, '{\"t\": 7}')", [device.id, when]
            )
            watermark = state()["watermark"]
            for _ in range(4):
                # behind => 0: the threshold moves past the reading at once.
                refresh(wait_for_writers=False, behind=timedelta(0))
            assert state()["threshold"] > when
            assert state()["watermark"] == watermark < when
            writer.commit()
    finally:
        writer.close()
    assert invalidations() == []
    refresh(wait_for_writers=False, behind=timedelta(0))
    assert state()["watermark"] > when
    assert_views_equal([(when, {"t": 7})], device)


@pytest.mark.django_db(transaction=True)
def test_a_waiting_refresh_waits_for_running_writers(committed_rollups, device):
    writer = _connect()
    done = threading.Event()
    try:
        with writer.cursor() as cursor:
            when = _now() - timedelta(minutes=30)
            cursor.execute(
                "INSERT INTO telemetry (device_id, time, metrics) VALUES (%s, %s, '{\"t\": 3}')", [device.id, when]
            )

            def refresh_in_thread():
                other = _connect()
                try:
                    with other.cursor() as c:
                        c.execute("SELECT * FROM telemetry_rollup.refresh(wait_for_writers => true)")
                    other.commit()
                finally:
                    other.close()
                    done.set()

            thread = threading.Thread(target=refresh_in_thread)
            thread.start()
            assert not done.wait(0.5)  # held by the open writer
            writer.commit()
            assert done.wait(10)
            thread.join()
    finally:
        writer.close()
    assert store_rows(STORES[0], device) == want_rows([(when, {"t": 3})], timedelta(minutes=1))


def _plan_relations(plan):
    """``{(node type, relation or index)}`` of every node of an EXPLAIN (FORMAT JSON) plan."""
    found = set()
    stack = [plan]
    while stack:
        node = stack.pop()
        for key in ("Relation Name", "Index Name"):
            if key in node:
                found.add((node["Node Type"], node[key]))
        stack.extend(node.get("Plans", []))
    return found


def test_an_aggregate_query_reads_the_store_by_index_and_only_the_raw_tail(device, three_days):
    refresh()
    with connection.cursor() as cursor:
        cursor.execute("SELECT c::text FROM show_chunks('telemetry') c")
        raw_chunks = {name.split(".")[-1] for (name,) in cursor.fetchall()}
        cursor.execute(
            "EXPLAIN (FORMAT JSON) SELECT bucket, metric, count, sum FROM telemetry_1h"
            " WHERE device_id = %s AND bucket >= now() - interval '4 days' AND bucket < now()",
            [device.id],
        )
        plan = cursor.fetchone()[0][0]["Plan"]
    relations = _plan_relations(plan)
    assert len(raw_chunks) >= 4
    raw_read = {name for _, name in relations if name in raw_chunks}
    assert len(raw_read) == 1  # the chunk holding the watermark: the tail, not the three days
    store_reads = {(node, name) for node, name in relations if "store_1h_pkey" in name}
    assert store_reads
    assert all(node in ("Index Scan", "Bitmap Index Scan", "Index Only Scan") for node, _ in store_reads)


def _late_readings_logged_for(device):
    """Rollups refreshed up to now, then a late reading of ``device`` (logged for the next refresh), committed."""
    refresh()
    when = _now() - timedelta(hours=1)
    insert_readings(device, [(when, {"t": 1})])
    assert [device_id for device_id, _, _ in invalidations()] == [device.id]


def _wait_until_waiting_or_done(pid, done):
    """Until the backend ``pid`` waits for a lock, or ``done`` is set: the interleaving is then decided."""
    watcher = _connect()
    watcher.autocommit = True
    try:
        with watcher.cursor() as cursor:
            for _ in range(200):
                cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
                if done.is_set() or cursor.fetchone() == ("Lock",):
                    return
                done.wait(0.05)
    finally:
        watcher.close()
    raise AssertionError("neither waiting nor done after 10 s")


def _in_thread(conn, statement, params):
    """Runs ``statement`` on ``conn`` and commits, in a thread; returns (thread, done event, errors)."""
    done, errors = threading.Event(), []

    def run():
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement, params)
            conn.commit()
        except Exception as exc:  # reported by the test
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done, errors


@pytest.mark.django_db(transaction=True)
def test_a_device_deleted_while_a_lock_free_refresh_runs_leaves_no_rollups(committed_rollups, device):
    """The refresh writes the device's buckets (uncommitted) and the delete commits before it: its trigger could
    not see them. The refresh holds the device until it commits, so the delete's trigger runs after and sees them."""
    _late_readings_logged_for(device)
    refresher, deleter = _connect(), _connect()
    try:
        with refresher.cursor() as cursor:
            cursor.execute("SELECT * FROM telemetry_rollup.refresh()")  # open: its rows are not committed yet
        thread, done, errors = _in_thread(deleter, "DELETE FROM devices WHERE id = %s", [device.id])
        _wait_until_waiting_or_done(deleter.get_backend_pid(), done)
        refresher.commit()
        thread.join(10)
        assert done.is_set()
        assert errors == []
    finally:
        refresher.close()
        deleter.close()
    for store in STORES:
        assert store_rows(store, device) == [], store


@pytest.mark.django_db(transaction=True)
def test_a_lock_free_refresh_started_while_a_device_is_deleted_writes_none_of_its_rollups(committed_rollups, device):
    """The delete runs (its trigger found no buckets yet) and commits after a refresh read the device's readings
    to move the watermark over them: the refresh waits for the delete, then reads without them."""
    insert_readings(device, [(_now() - timedelta(hours=1), {"t": 1})])
    for _ in range(2):  # the threshold moves, then the fence is set: the next refresh moves the watermark
        refresh(wait_for_writers=False)
    assert state()["watermark"].year == 1
    refresher, deleter = _connect(), _connect()
    try:
        with deleter.cursor() as cursor:
            cursor.execute("DELETE FROM devices WHERE id = %s", [device.id])  # open: not committed yet
        thread, done, errors = _in_thread(refresher, "SELECT * FROM telemetry_rollup.refresh()", [])
        _wait_until_waiting_or_done(refresher.get_backend_pid(), done)
        deleter.commit()
        thread.join(10)
        assert done.is_set()
        assert errors == []
    finally:
        refresher.close()
        deleter.close()
    for store in STORES:
        assert store_rows(store, device) == [], store


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE", "READ COMMITTED"])
@pytest.mark.django_db(transaction=True)
def test_a_writer_whose_snapshot_predates_the_threshold_move_loses_no_reading(committed_rollups, device, isolation):
    """A writer that took its snapshot before the threshold moved reads the old threshold whenever it inserts, so
    the fence (which trusts that such a writer already had its xid) lets the watermark pass its reading before it
    commits. Its readings must reach the log all the same."""
    writer = _connect()
    try:
        with writer.cursor() as cursor:
            cursor.execute(f"BEGIN ISOLATION LEVEL {isolation}")
            cursor.execute("SELECT 1")  # the snapshot, no xid yet
            for _ in range(2):  # the threshold moves past now - 1 min; then the fence is set
                refresh(wait_for_writers=False, behind=timedelta(minutes=1))
            when = _now() - timedelta(minutes=3)
            cursor.execute(
                "INSERT INTO telemetry (device_id, time, metrics) VALUES (%s, %s, '{\"t\": 7}')", [device.id, when]
            )
            refresh(wait_for_writers=False, behind=timedelta(minutes=1))  # the watermark passes the reading
            assert state()["watermark"] > when
            writer.commit()
    finally:
        writer.close()
    refresh(wait_for_writers=False, behind=timedelta(minutes=1))
    assert Telemetry.objects.filter(device=device).count() == 1
    assert rows_of("telemetry_1m", device) == want_rows([(when, {"t": 7})], WIDTHS["telemetry_1m"])
