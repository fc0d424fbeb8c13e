"""Aggregate answers say up to when they are materialized (``complete_until`` and the ``Complete-Until`` header),
on both editions: the continuous aggregates' watermark (TSL), the rollups' watermark (Apache). A reading that arrives
late, below it, is counted only at the next refresh: the answer says where that can happen."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from tests.factories import DeviceFactory, insert_readings
from tests.telemetry.test_aggregates import aggregate_url, iso

HOUR = timedelta(hours=1)


def _hour(moment):
    return moment.replace(minute=0, second=0, microsecond=0)


def _aggregate(client, device, start, end, interval="1h"):
    response = client.get(aggregate_url(device), {"start": iso(start), "end": iso(end), "interval": interval})
    assert response.status_code == 200, response.content
    body = response.json()
    assert response.headers.get("Complete-Until") == body["complete_until"]  # None: no header
    return body


def _count(body, bucket):
    return sum(row["count"] for row in body["results"] if row["bucket"] == iso(bucket))


def test_complete_until_is_the_watermark_and_late_readings_wait_below_it(committed_aggregates, viewer_client):
    device = DeviceFactory()
    now = datetime.now(UTC)
    start, end = _hour(now) - timedelta(hours=6), _hour(now) + HOUR
    insert_readings(device, [(_hour(now) - timedelta(hours=5, minutes=-m), {"t": m}) for m in range(0, 300, 7)])

    before = _aggregate(viewer_client, device, start, end)
    assert before["complete_until"] is None  # nothing materialized yet: every bucket computed at query time

    call_command("refresh_aggregates", stdout=StringIO())
    body = _aggregate(viewer_client, device, start, end)
    complete_until = datetime.fromisoformat(body["complete_until"])
    # Materialized up to a whole hour, at most a couple of hours behind now (the refresh leaves the newest
    # minutes to real time).
    assert complete_until == _hour(complete_until)
    assert now - timedelta(hours=2) <= complete_until <= now
    assert body["results"] == before["results"]  # materialized or real time: the same numbers

    # A late reading below complete_until is not counted until the next refresh; raw readings show it at once.
    late_bucket = _hour(now) - timedelta(hours=5)
    assert late_bucket < complete_until
    counted = _count(body, late_bucket)
    insert_readings(device, [(late_bucket + timedelta(seconds=1), {"t": 1000})])
    assert _count(_aggregate(viewer_client, device, start, end), late_bucket) == counted

    call_command("refresh_aggregates", stdout=StringIO())
    assert _count(_aggregate(viewer_client, device, start, end), late_bucket) == counted + 1


@pytest.mark.django_db
def test_an_interval_served_from_raw_readings_is_complete_at_query_time(viewer_client):
    """No aggregate divides 90 s: its buckets come from the raw readings, nothing is materialized."""
    device = DeviceFactory()
    now = datetime.now(UTC)
    insert_readings(device, [(now - timedelta(minutes=30), {"t": 1})])
    body = _aggregate(viewer_client, device, _hour(now) - HOUR, _hour(now) + HOUR, interval="90s")
    assert body["complete_until"] is None
    assert [row["count"] for row in body["results"]] == [1]


@pytest.mark.django_db
def test_the_schema_documents_complete_until(api_client):
    schema = api_client.get("/api/v1/schema/?format=json").json()
    field = schema["components"]["schemas"]["TelemetryAggregate"]["properties"]["complete_until"]
    assert field["nullable"] is True
    assert "Complete-Until" in field["description"]
    assert "late" in field["description"]
