"""What ingest accepts, the aggregates count: the oldest reading ingest accepts (``timescale.oldest_countable``) is
counted at every level by the late-data refresh, on both editions; an older one is refused
(tests/telemetry/test_ingest.py, ``too_old``)."""

from datetime import UTC, datetime, timedelta

import orjson

from telemetry import timescale
from tests.factories import DeviceFactory, insert_readings
from tests.telemetry.test_aggregates import iso, rows_of
from tests.telemetry.test_rollups import WIDTHS, want_rows

INGEST = "/api/v1/telemetry/ingest/"


def test_the_oldest_reading_ingest_accepts_is_counted_at_every_level(committed_aggregates, api_client, settings):
    # Every level materialized first, up to yesterday at least: the old reading arrives below every watermark, as
    # late data (with nothing materialized, TSL's real-time part would show it without any refresh).
    insert_readings(DeviceFactory(), [(datetime.now(UTC) - timedelta(days=2), {"t": 1})])
    timescale.refresh_aggregates(**timescale.configured())
    device = DeviceFactory()
    # The bound only moves forward with time: the one of a moment after the request is the request's or later.
    oldest = timescale.oldest_countable(
        datetime.now(UTC) + timedelta(seconds=5),
        retention_days=settings.TELEMETRY_RETENTION_DAYS,
        aggregate_retention_days=settings.TELEMETRY_AGGREGATE_RETENTION_DAYS,
    )
    assert oldest > datetime.now(UTC) - timedelta(days=settings.TELEMETRY_RETENTION_DAYS)  # inside the retention
    inside = oldest + timedelta(microseconds=1)
    body = {"device_id": str(device.id), "timestamp": iso(inside), "metrics": {"x": 4.5}}

    response = api_client.post(INGEST, data=orjson.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    timescale.refresh_aggregates(**timescale.configured())

    for view, width in WIDTHS.items():
        assert rows_of(view, device) == want_rows([(inside, {"x": 4.5})], width), view
