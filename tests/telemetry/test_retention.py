"""Retention on both editions: `manage.py enforce_retention` and the worker's daily task.

That telemetry is a hypertable with 1-day chunks is tested in test_storage.py.
"""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from iothub.worker import registry
from telemetry import tasks
from telemetry.models import Telemetry
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db

RETENTION = {
    "TELEMETRY_RETENTION_DAYS": 30,
    "TELEMETRY_COMPRESS_AFTER_DAYS": 7,
    "TELEMETRY_AGGREGATE_RETENTION_DAYS": 730,
}


def _now():
    # In the test's transaction now() is the transaction's start: the very instant drop_chunks measures from.
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def _chunks():
    """``{chunk: (range_start, range_end)}`` of the telemetry hypertable."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT chunk_schema || '.' || chunk_name, range_start, range_end FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'telemetry'"
        )
        return {chunk: (start, end) for chunk, start, end in cursor.fetchall()}


@pytest.fixture
def hundred_days():
    """Readings every 6 hours over the last 100 days: about 100 one-day chunks. Returns the reading times."""
    device = DeviceFactory()
    now = _now()
    times = [now - timedelta(hours=6 * step) for step in range(400)]
    Telemetry.objects.bulk_create(Telemetry(device=device, time=time, metrics={"t": 1.0}) for time in times)
    return times


@override_settings(**RETENTION)
def test_enforce_retention_drops_exactly_the_chunks_entirely_older_than_the_setting(hundred_days):
    before = _chunks()
    cutoff = _now() - timedelta(days=30)
    expired = {chunk for chunk, (_start, end) in before.items() if end <= cutoff}
    assert 60 <= len(expired) < len(before)

    out = StringIO()
    call_command("enforce_retention", stdout=out)

    after = _chunks()
    assert set(after) == set(before) - expired
    # The chunk holding the cutoff keeps its older readings: only whole chunks are dropped.
    oldest_start = min(start for start, _end in after.values())
    assert oldest_start <= cutoff
    kept_times = [time for time in hundred_days if time >= oldest_start]
    assert Telemetry.objects.count() == len(kept_times)
    assert not Telemetry.objects.filter(time__lt=oldest_start).exists()
    assert f"telemetry: {len(expired)} chunk(s) older than 30 days dropped" in out.getvalue()
    assert set(out.getvalue().split()) >= expired


@override_settings(**RETENTION)
def test_enforce_retention_again_drops_nothing(hundred_days):
    call_command("enforce_retention", stdout=StringIO())
    chunks = _chunks()
    out = StringIO()
    call_command("enforce_retention", stdout=out)
    assert _chunks() == chunks
    assert "telemetry: 0 chunk(s) older than 30 days dropped" in out.getvalue()


@override_settings(**RETENTION)
def test_readings_within_the_retention_are_never_dropped(hundred_days):
    with override_settings(TELEMETRY_RETENTION_DAYS=200):
        call_command("enforce_retention", stdout=StringIO())
    assert Telemetry.objects.count() == len(hundred_days)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"TELEMETRY_RETENTION_DAYS": 0}, "TELEMETRY_RETENTION_DAYS must be at least 1"),
        ({"TELEMETRY_COMPRESS_AFTER_DAYS": 30}, "TELEMETRY_COMPRESS_AFTER_DAYS (30) must be at least 0 and less"),
        ({"TELEMETRY_AGGREGATE_RETENTION_DAYS": 29}, "TELEMETRY_AGGREGATE_RETENTION_DAYS (29) must be at least"),
    ],
)
def test_enforce_retention_refuses_contradictory_settings(hundred_days, overrides, message):
    chunks = _chunks()
    with override_settings(**{**RETENTION, **overrides}), pytest.raises(CommandError, match=re.escape(message)):
        call_command("enforce_retention", stdout=StringIO())
    assert _chunks() == chunks


def test_the_worker_enforces_retention_daily_from_its_start():
    task = registry.periodic_tasks["enforce_retention"]
    assert task.func is tasks.enforce_retention
    assert task.every == timedelta(days=1)
    assert task.run_at_start


@override_settings(**RETENTION)
def test_the_worker_task_drops_old_chunks(hundred_days):
    registry.periodic_tasks["enforce_retention"].func()
    cutoff = _now() - timedelta(days=30)
    assert all(end > cutoff for _start, end in _chunks().values())
    assert Telemetry.objects.filter(time__gte=cutoff).count() == len([t for t in hundred_days if t >= cutoff])


def test_the_worker_refreshes_late_telemetry_hourly():
    task = registry.periodic_tasks["refresh_late_telemetry"]
    assert task.func is tasks.refresh_late_telemetry
    assert task.every == timedelta(hours=1)
    assert task.run_at_start


def test_the_late_telemetry_task_does_nothing_on_the_apache_build(timescaledb_edition):
    if timescaledb_edition != "apache":
        pytest.skip("the Apache build's behaviour; with TSL see test_policies.py")
    # Without the edition check this would fail: refresh_late_data needs TSL.
    assert registry.periodic_tasks["refresh_late_telemetry"].func() is None
