"""Both editions answer the aggregate API identically: a golden-file test, since each edition runs in its own pytest.

A fixed dataset (three devices, numeric and other metrics, buckets across hours and days) is stored at fixed
offsets from a day boundary three days ago; the API's answers, with their times as seconds from that boundary, must
equal aggregate_parity.json on either edition, before the aggregates are refreshed (real-time) and after
``timescale.refresh_aggregates`` (continuous aggregates with TSL, the project's rollups on Apache). Values are
multiples of 1/8, so every sum is exact whatever order an edition adds in, and the JSON is the same to the bit.

The golden file was written by the API and checked against the readings (``expected``, and one bucket worked out by
hand below). To rewrite it after a deliberate change: ``AGGREGATE_PARITY_WRITE=1 make test EDITION=timescale
ARGS=tests/telemetry/test_aggregate_parity.py`` (the test then fails, so a rewrite is never mistaken for a pass),
review the diff, commit.
"""

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from psycopg2 import sql

from telemetry import timescale
from tests.factories import DeviceFactory, insert_readings
from tests.telemetry.test_aggregates import aggregate_url, expected, iso
from tests.telemetry.test_rollups import _reset_rollups

GOLDEN = Path(__file__).with_name("aggregate_parity.json")
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)

# (interval, start, end) as offsets from the base; every interval divides a day, so buckets never depend on the date.
REQUESTS = [
    ("90s", HOUR, 4 * HOUR),  # raw readings: not a multiple of a minute
    ("1m", 2 * HOUR, 2 * HOUR + 30 * MINUTE),
    ("15m", 0 * HOUR, 6 * HOUR),
    ("90m", 0 * HOUR, 2 * DAY),  # re-bucketed from 1-minute buckets across hours
    ("1h", 20 * HOUR, DAY + 4 * HOUR),  # across midnight
    ("6h", 0 * HOUR, 3 * DAY),
    ("1d", -DAY, 3 * DAY),
]


def dataset(base):
    """``{label: [(time, metrics)]}``: deterministic readings at whole seconds from ``base``."""
    busy, sparse, silent = [], [], []
    for step in range(700):  # every 6 min 11 s over 2 days and 1 h
        time = base + timedelta(seconds=371 * step)
        metrics = {
            "temp": ((step * 37) % 201 - 100) / 8,
            "hum": (step * 13) % 100,
            "status": "ok" if step % 3 else "warn",  # not numbers: never aggregated
            "door_open": step % 2 == 0,
            "nested": {"temp": 1},
            "none": None,
        }
        if step % 5 == 0:
            del metrics["temp"]
        busy.append((time, metrics))
    sparse = [
        (base + timedelta(hours=1), {"temp": 1.5, "pressure": 1000}),
        (base + timedelta(hours=1, seconds=30), {"temp": 2.25}),
        (base + timedelta(hours=3), {"temp": -0.5, "label": "x"}),
        (base + timedelta(days=1, hours=2), {"pressure": 990.5}),
        (base + timedelta(days=2, hours=23, minutes=59, seconds=59), {"pressure": 1001.125}),
    ]
    silent = [(base + timedelta(hours=hour), {"state": "idle", "on": False}) for hour in range(5)]
    return {"busy": busy, "sparse": sparse, "silent": silent}


def relative(answer, base):
    """The API's answer with its times as seconds from ``base``."""

    def seconds(text):
        return int((datetime.fromisoformat(text.replace("Z", "+00:00")) - base).total_seconds())

    return {
        **answer,
        "start": seconds(answer["start"]),
        "end": seconds(answer["end"]),
        "results": [{**bucket, "bucket": seconds(bucket["bucket"])} for bucket in answer["results"]],
    }


def answers(client, devices, base):
    """``{device label: {interval: relative answer}}`` of every request."""
    result = {}
    for label, device in devices.items():
        for interval, start, end in REQUESTS:
            params = {"start": iso(base + start), "end": iso(base + end), "interval": interval}
            response = client.get(aggregate_url(device), params)
            assert response.status_code == 200, response.content
            body = response.json()
            del body["complete_until"]  # the watermark follows the clock (test_aggregate_completeness.py)
            result.setdefault(label, {})[interval] = relative(body, base)
    return result


@pytest.fixture
def committed_aggregates(transactional_db, timescaledb_edition):
    """The aggregates as the migrations left them before and after (the refresh here commits and moves the
    watermarks up to now, where other tests insert readings)."""

    def reset():
        if timescaledb_edition == "apache":
            _reset_rollups()
            return
        with connection.cursor() as cursor:
            for aggregate in reversed(timescale.AGGREGATES):
                # Truncating a continuous aggregate also resets its watermark (TimescaleDB >= 2.15).
                cursor.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(aggregate.name)))

    reset()
    yield
    reset()


def test_both_editions_answer_the_aggregate_api_as_the_golden_file(committed_aggregates, viewer_client):
    with connection.cursor() as cursor:
        cursor.execute("SELECT date_trunc('day', now(), 'UTC') - interval '3 days'")
        (base,) = cursor.fetchone()
    readings = dataset(base)
    devices = {label: DeviceFactory() for label in readings}
    for label, device in devices.items():
        insert_readings(device, readings[label])

    before = answers(viewer_client, devices, base)
    timescale.refresh_aggregates(**timescale.configured())
    after = answers(viewer_client, devices, base)

    if os.environ.get("AGGREGATE_PARITY_WRITE"):
        GOLDEN.write_text(json.dumps(after, indent=1) + "\n")
        pytest.fail(f"{GOLDEN.name} rewritten: check it and commit it")
    golden = json.loads(GOLDEN.read_text())
    assert before == golden
    assert after == golden

    # The golden file itself is right: every answer equals what the readings give, computed here.
    for label, by_interval in golden.items():
        for interval, start, end in REQUESTS:
            width = {"s": 1, "m": 60, "h": 3600, "d": 86400}[interval[-1]] * int(interval[:-1])
            want = expected(readings[label], base + start, base + end, timedelta(seconds=width))
            got = [
                {**bucket, "bucket": iso(base + timedelta(seconds=bucket["bucket"]))}
                for bucket in by_interval[interval]["results"]
            ]
            assert got == want, (label, interval)
    assert golden["silent"]["1d"]["results"] == []
    # Worked out by hand: the sparse device's first day holds temp 1.5, 2.25 and -0.5, pressure 1000.
    assert golden["sparse"]["1d"]["results"][:2] == [
        {"bucket": 0, "metric": "pressure", "count": 1, "min": 1000.0, "max": 1000.0, "avg": 1000.0, "sum": 1000.0},
        {"bucket": 0, "metric": "temp", "count": 3, "min": -0.5, "max": 2.25, "avg": 3.25 / 3, "sum": 3.25},
    ]
