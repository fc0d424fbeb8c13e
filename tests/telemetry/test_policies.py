"""`manage.py apply_timescale_policies`, `timescale_status`, the settings' validation and the late-data refresh.

Policies, compression and continuous aggregates need TimescaleDB's TSL: those tests are marked `tsl` and call
jobs and refreshes explicitly, never waiting for the background scheduler.
"""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from psycopg2 import sql

from iothub.worker import registry
from telemetry import tasks, timescale
from telemetry.models import Telemetry
from tests.factories import DeviceFactory

DEFAULTS = {
    "TELEMETRY_RETENTION_DAYS": 90,
    "TELEMETRY_COMPRESS_AFTER_DAYS": 7,
    "TELEMETRY_AGGREGATE_RETENTION_DAYS": 730,
}
POLICY_PROCS = ("policy_retention", "policy_compression", "policy_refresh_continuous_aggregate")
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


def _apply(**overrides):
    out = StringIO()
    with override_settings(**{**DEFAULTS, **overrides}):
        call_command("apply_timescale_policies", stdout=out)
    return out.getvalue()


def _policies():
    """``{(relation, proc_name): {job_id, schedule_interval, <config intervals>}}``, aggregates by view name."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT coalesce(c.view_name, j.hypertable_name), j.proc_name, j.job_id, j.schedule_interval,
                   (j.config ->> 'drop_after')::interval, (j.config ->> 'compress_after')::interval,
                   (j.config ->> 'start_offset')::interval, (j.config ->> 'end_offset')::interval
            FROM timescaledb_information.jobs j
            LEFT JOIN timescaledb_information.continuous_aggregates c
              ON c.materialization_hypertable_schema = j.hypertable_schema
             AND c.materialization_hypertable_name = j.hypertable_name
            WHERE j.proc_name = ANY(%s)
            """,
            [list(POLICY_PROCS)],
        )
        keys = ("job_id", "schedule_interval", "drop_after", "compress_after", "start_offset", "end_offset")
        return {
            (relation, proc): {key: value for key, value in zip(keys, values, strict=True) if value is not None}
            for relation, proc, *values in cursor.fetchall()
        }


# Settings validation: the same on both editions, before anything touches the database.


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ((0, 0, 730), "TELEMETRY_RETENTION_DAYS must be at least 1 day, not 0."),
        ((90, 90, 730), "TELEMETRY_COMPRESS_AFTER_DAYS (90) must be at least 0 and less than TELEMETRY_RETENTION_DAYS"),
        ((90, -1, 730), "TELEMETRY_COMPRESS_AFTER_DAYS (-1) must be at least 0"),
        ((90, 7, 30), "TELEMETRY_AGGREGATE_RETENTION_DAYS (30) must be at least TELEMETRY_RETENTION_DAYS (90)"),
        ((2, 1, 3), "TELEMETRY_AGGREGATE_RETENTION_DAYS=3 is too short for the refresh window of telemetry_1d"),
    ],
)
def test_contradictory_settings_are_refused_with_a_clear_message(settings, message):
    retention, compress_after, aggregate_retention = settings
    with pytest.raises(timescale.PolicySettingsError, match=re.escape(message)):
        timescale.validate_settings(
            retention_days=retention, compress_after_days=compress_after, aggregate_retention_days=aggregate_retention
        )


@pytest.mark.django_db
def test_apply_timescale_policies_fails_on_contradictory_settings():
    with pytest.raises(CommandError, match="TELEMETRY_COMPRESS_AFTER_DAYS"):
        _apply(TELEMETRY_COMPRESS_AFTER_DAYS=120)


@pytest.mark.parametrize(("retention", "aggregate_retention"), [(1, 4), (1, 730), (4, 4), (90, 730), (400, 400)])
def test_refresh_windows_stay_inside_what_their_source_keeps(retention, aggregate_retention):
    kept = timescale.retention_periods(retention_days=retention, aggregate_retention_days=aggregate_retention)
    windows = timescale.refresh_windows(retention_days=retention, aggregate_retention_days=aggregate_retention)
    for aggregate in timescale.AGGREGATES:
        start, end = windows[aggregate.name]
        # A refresh may widen to whole buckets: even then it reads nothing the source may have dropped.
        assert start + aggregate.bucket < kept[aggregate.source]
        assert start - end >= 2 * aggregate.bucket
        assert start <= aggregate.start_offset


def test_default_refresh_windows_are_the_documented_offsets():
    assert timescale.refresh_windows(retention_days=90, aggregate_retention_days=730) == {
        "telemetry_1m": (2 * HOUR, MINUTE),
        "telemetry_1h": (2 * DAY, HOUR),
        "telemetry_1d": (3 * DAY, HOUR),
    }


# The Apache build: no policies, a clear message, success (the command runs at every start).


@pytest.mark.django_db
def test_apply_timescale_policies_on_the_apache_build_says_why_and_succeeds(timescaledb_edition):
    if timescaledb_edition != "apache":
        pytest.skip("the Apache build's behaviour")
    for _ in range(2):
        out = _apply()
        assert "Apache-2 build" in out
        assert "enforce_retention" in out
    assert _policies() == {}


# timescale_status: both editions.


@pytest.mark.django_db
def test_timescale_status_shows_the_hypertable_its_chunks_and_the_aggregates(timescaledb_edition):
    device = DeviceFactory()
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        (now,) = cursor.fetchone()
    Telemetry.objects.bulk_create(
        Telemetry(device=device, time=now - timedelta(days=day), metrics={"t": day}) for day in range(3)
    )
    out = StringIO()
    call_command("timescale_status", stdout=out)
    output = out.getvalue()
    assert re.search(rf"TimescaleDB 2\.\d+\.\d+, edition {timescaledb_edition}", output)
    assert re.search(r"^  telemetry: 3 chunks, .+, compression (on|off)", output, re.MULTILINE)
    assert re.search(r"^  telemetry: 3 chunks from \S+ \S+ to \S+ \S+, 0 compressed", output, re.MULTILINE)
    kind = "continuous aggregate, real-time, watermark" if timescaledb_edition == "timescale" else "plain view"
    for name in ("telemetry_1m", "telemetry_1h", "telemetry_1d"):
        assert f"  {name}: {kind}" in output
    assert "Jobs (UTC)" in output


# With TSL: the policies themselves.


@pytest.mark.tsl
@pytest.mark.django_db
def test_policies_match_the_settings():
    out = _apply()
    policies = _policies()
    expected = {
        ("telemetry", "policy_compression"): {"compress_after": 7 * DAY},
        ("telemetry", "policy_retention"): {"drop_after": 90 * DAY},
        ("telemetry_1m", "policy_refresh_continuous_aggregate"): {
            "start_offset": 2 * HOUR,
            "end_offset": MINUTE,
            "schedule_interval": 5 * MINUTE,
        },
        ("telemetry_1h", "policy_refresh_continuous_aggregate"): {
            "start_offset": 2 * DAY,
            "end_offset": HOUR,
            "schedule_interval": 30 * MINUTE,
        },
        ("telemetry_1d", "policy_refresh_continuous_aggregate"): {
            "start_offset": 3 * DAY,
            "end_offset": HOUR,
            "schedule_interval": HOUR,
        },
        ("telemetry_1m", "policy_retention"): {"drop_after": 90 * DAY},
        ("telemetry_1h", "policy_retention"): {"drop_after": 730 * DAY},
        ("telemetry_1d", "policy_retention"): {"drop_after": 730 * DAY},
    }
    assert set(policies) == set(expected)
    for key, values in expected.items():
        assert {name: policies[key][name] for name in values} == values, key
    assert out.count(" added") == len(expected)
    assert "telemetry: compression enabled" in out


@pytest.mark.tsl
@pytest.mark.django_db
def test_reapplying_the_same_settings_changes_nothing():
    _apply()
    policies = _policies()
    out = _apply()
    assert out.strip() == "TimescaleDB policies already match the settings: nothing changed."
    assert _policies() == policies


@pytest.mark.tsl
@pytest.mark.django_db
def test_changing_a_setting_replaces_only_the_policies_it_decides():
    _apply()
    before = _policies()
    out = _apply(TELEMETRY_RETENTION_DAYS=30)
    after = _policies()
    replaced = {key for key in after if after[key]["job_id"] != before[key]["job_id"]}
    assert replaced == {("telemetry", "policy_retention"), ("telemetry_1m", "policy_retention")}
    assert after[("telemetry", "policy_retention")]["drop_after"] == 30 * DAY
    assert after[("telemetry_1m", "policy_retention")]["drop_after"] == 30 * DAY
    assert "telemetry: retention policy (drop_after 30 days) replaced" in out
    assert "telemetry_1m: retention policy (drop_after 30 days) replaced" in out


@pytest.mark.tsl
@pytest.mark.django_db
def test_a_short_retention_shortens_the_refresh_window_that_reads_from_it():
    _apply()
    _apply(TELEMETRY_RETENTION_DAYS=2, TELEMETRY_COMPRESS_AFTER_DAYS=1, TELEMETRY_AGGREGATE_RETENTION_DAYS=4)
    policies = _policies()
    # telemetry_1h reads telemetry_1m, kept 2 days: its window starts one bucket and the margin inside that.
    assert policies[("telemetry_1h", "policy_refresh_continuous_aggregate")]["start_offset"] == 46 * HOUR
    # telemetry_1d reads telemetry_1h, kept 4 days.
    assert policies[("telemetry_1d", "policy_refresh_continuous_aggregate")]["start_offset"] == 2 * DAY + 23 * HOUR


@pytest.mark.tsl
@pytest.mark.django_db
@pytest.mark.parametrize(("retention", "compress_after", "aggregate_retention"), [(90, 7, 730), (2, 1, 4), (7, 1, 7)])
def test_every_refresh_window_is_inside_its_sources_retention_policy(retention, compress_after, aggregate_retention):
    _apply(
        TELEMETRY_RETENTION_DAYS=retention,
        TELEMETRY_COMPRESS_AFTER_DAYS=compress_after,
        TELEMETRY_AGGREGATE_RETENTION_DAYS=aggregate_retention,
    )
    policies = _policies()
    for aggregate in timescale.AGGREGATES:
        window = policies[(aggregate.name, "policy_refresh_continuous_aggregate")]
        source_drop_after = policies[(aggregate.source, "policy_retention")]["drop_after"]
        assert window["start_offset"] + aggregate.bucket < source_drop_after, aggregate.name


@pytest.mark.tsl
@pytest.mark.django_db
def test_compression_segments_by_device_and_orders_by_time_descending():
    _apply()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname::text, segmentby_column_index, orderby_column_index, orderby_asc"
            " FROM timescaledb_information.compression_settings WHERE hypertable_name = 'telemetry'"
            " ORDER BY segmentby_column_index NULLS LAST, orderby_column_index"
        )
        assert cursor.fetchall() == [("device_id", 1, None, None), ("time", None, 1, False)]
        cursor.execute(
            "SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_name = 'telemetry'"
        )
        assert cursor.fetchone() == (True,)


@pytest.mark.tsl
@pytest.mark.django_db
def test_timescale_status_lists_the_policies():
    _apply()
    out = StringIO()
    call_command("timescale_status", stdout=out)
    output = out.getvalue()
    assert re.search(r"policy_retention on telemetry, every", output)
    assert re.search(r"policy_compression on telemetry, every", output)
    for name in ("telemetry_1m", "telemetry_1h", "telemetry_1d"):
        assert f"policy_refresh_continuous_aggregate on {name}, every" in output
    assert "compression on (segment by device_id" in output


@pytest.fixture
def committed_policies(transactional_db):
    """Policies applied for real (committed), then removed with the aggregates' materialized rows, so that neither
    the background scheduler nor a moved watermark reaches into other tests."""
    _apply()
    yield
    with connection.cursor() as cursor:
        for aggregate in reversed(timescale.AGGREGATES):
            cursor.execute("SELECT remove_continuous_aggregate_policy(%s, if_exists => true)", [aggregate.name])
            cursor.execute("SELECT remove_retention_policy(%s, if_exists => true)", [aggregate.name])
        cursor.execute("SELECT remove_retention_policy('telemetry', if_exists => true)")
        cursor.execute("SELECT remove_compression_policy('telemetry', if_exists => true)")
        # No chunk is old enough to have been compressed, so compression can be switched off again.
        cursor.execute("ALTER TABLE telemetry SET (timescaledb.compress = false)")
        # Truncating a continuous aggregate also resets its watermark (TimescaleDB >= 2.15).
        for aggregate in reversed(timescale.AGGREGATES):
            cursor.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(aggregate.name)))


def _bucket(view, device, bucket):
    """``(count, sum)`` of metric t in one bucket of an aggregate, or None."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT count, sum FROM {} WHERE device_id = %s AND metric = 't' AND bucket = %s").format(
                sql.Identifier(view)
            ),
            [device.id, bucket],
        )
        return cursor.fetchone()


def _run_refresh_policies():
    policies = _policies()
    with connection.cursor() as cursor:
        for aggregate in timescale.AGGREGATES:
            job_id = policies[(aggregate.name, "policy_refresh_continuous_aggregate")]["job_id"]
            cursor.execute("CALL run_job(%s)", [job_id])


@pytest.mark.tsl
@override_settings(**DEFAULTS)
def test_the_worker_materializes_readings_that_arrive_too_late_for_the_refresh_policies(committed_policies):
    device = DeviceFactory()
    with connection.cursor() as cursor:
        cursor.execute("SELECT now() - interval '30 minutes', date_trunc('day', now()) - interval '5 days'")
        recent, late_day = cursor.fetchone()
    # A recent reading, materialized by the 1-minute policy: the watermark moves up to it. The history before
    # the policies existed is materialized once by the late-data refresh.
    Telemetry.objects.create(device=device, time=recent, metrics={"t": 1})
    _run_refresh_policies()
    timescale.refresh_late_data(**timescale.configured())

    # A reading five days old arrives: outside every policy's window, and below the watermarks.
    late = late_day + timedelta(minutes=30)
    Telemetry.objects.create(device=device, time=late, metrics={"t": 2.5})
    _run_refresh_policies()
    assert _bucket("telemetry_1m", device, late) is None

    task = registry.periodic_tasks["refresh_late_telemetry"]
    assert task.func is tasks.refresh_late_telemetry  # importing tasks registers them, also when run alone
    task.func()

    assert _bucket("telemetry_1m", device, late) == (1, 2.5)
    assert _bucket("telemetry_1h", device, late_day) == (1, 2.5)
    assert _bucket("telemetry_1d", device, late_day) == (1, 2.5)
