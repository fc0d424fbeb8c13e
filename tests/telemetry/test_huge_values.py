"""Huge numbers and the aggregates: ingest refuses a number beyond MAX_MAGNITUDE (tests/telemetry/test_ingest.py), so
that no sum overflows; here the aggregates answer and refresh with many values at the bound, on both editions, and
skip bigger values written by SQL where the aggregates' SQL can (docs/operations.md, "Huge values")."""

from datetime import timedelta

import orjson
import pytest
from django.db import connection

from telemetry import timescale
from telemetry.ingest.validation import MAX_MAGNITUDE
from tests.factories import DeviceFactory, insert_readings
from tests.telemetry.test_aggregates import aggregate_url, expected, iso

INGEST = "/api/v1/telemetry/ingest/"
FIRMWARE_NO_VALUE = 1.7976931348623157e308  # the largest double, a common "no value" placeholder
INTERVALS = {
    "1m": timedelta(minutes=1),
    "90s": timedelta(seconds=90),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
}


def _now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def _aggregates(client, device, around):
    """``{interval: results}`` of the aggregate API for the day before and after ``around``."""
    day = around.replace(hour=0, minute=0, second=0, microsecond=0)
    params = {"start": iso(day - timedelta(days=1)), "end": iso(day + timedelta(days=1))}
    answers = {}
    for interval in INTERVALS:
        response = client.get(aggregate_url(device), {**params, "interval": interval})
        assert response.status_code == 200, (interval, response.content)
        answers[interval] = response.json()["results"]
    return answers


def _want(readings, around):
    day = around.replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = day - timedelta(days=1), day + timedelta(days=1)
    return {text: expected(readings, start, end, width) for text, width in INTERVALS.items()}


def test_1000_values_at_the_bound_in_one_minute_aggregate_at_every_level_and_refresh(
    committed_aggregates, api_client, viewer_client
):
    device, other = DeviceFactory(), DeviceFactory()
    minute = _now().replace(second=0, microsecond=0) - timedelta(minutes=2)
    readings = [
        (minute + timedelta(milliseconds=50 * index), {"x": MAX_MAGNITUDE, "y": -MAX_MAGNITUDE})
        for index in range(1000)
    ]
    body = [{"device_id": str(device.id), "timestamp": iso(time), "metrics": metrics} for time, metrics in readings]
    response = api_client.post(INGEST, data=orjson.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    insert_readings(other, [(minute, {"t": 1})])
    want = _want(readings, minute)

    assert _aggregates(viewer_client, device, minute) == want

    # The refresh (both editions: rollups or continuous aggregates) materializes them without overflowing, and
    # every other device's buckets with them.
    timescale.refresh_aggregates(**timescale.configured())

    assert _aggregates(viewer_client, device, minute) == want
    assert _aggregates(viewer_client, other, minute) == _want([(minute, {"t": 1})], minute)


@pytest.mark.django_db
def test_bigger_values_written_by_sql_are_skipped_by_the_raw_aggregates(viewer_client):
    """Raw readings serve intervals no aggregate divides (90s): a stored number beyond the bound is skipped there on
    both editions, so it can't overflow the sum."""
    device = DeviceFactory()
    minute = _now().replace(second=0, microsecond=0) - timedelta(minutes=2)
    sane = [(minute + timedelta(seconds=2), {"x": 1.5}), (minute + timedelta(seconds=3), {"x": MAX_MAGNITUDE})]
    huge = [(minute, {"x": FIRMWARE_NO_VALUE, "y": 2}), (minute + timedelta(seconds=1), {"x": -FIRMWARE_NO_VALUE})]
    insert_readings(device, huge + sane)

    day = minute.replace(hour=0, minute=0, second=0, microsecond=0)
    params = {"start": iso(day), "end": iso(day + timedelta(days=1)), "interval": "90s"}
    response = viewer_client.get(aggregate_url(device), params)

    assert response.status_code == 200, response.content
    want = [(minute, {"y": 2}), *sane]
    assert response.json()["results"] == expected(want, day, day + timedelta(days=1), timedelta(seconds=90))


def test_on_apache_bigger_values_written_by_sql_are_skipped_by_the_views_and_the_refresh(
    committed_aggregates, timescaledb_edition, viewer_client
):
    if timescaledb_edition != timescale.APACHE:
        pytest.skip("the continuous aggregates count them: docs/operations.md, 'Huge values'")
    device, other = DeviceFactory(), DeviceFactory()
    minute = _now().replace(second=0, microsecond=0) - timedelta(days=1)
    huge = [(minute, {"x": FIRMWARE_NO_VALUE, "y": 2}), (minute + timedelta(seconds=1), {"x": FIRMWARE_NO_VALUE})]
    insert_readings(device, huge)
    insert_readings(other, [(minute, {"t": 1})])
    want = _want([(minute, {"y": 2})], minute)

    assert _aggregates(viewer_client, device, minute) == want
    timescale.refresh_aggregates(**timescale.configured())  # once aborted with "value out of range: overflow"
    assert _aggregates(viewer_client, device, minute) == want
    assert _aggregates(viewer_client, other, minute) == _want([(minute, {"t": 1})], minute)
