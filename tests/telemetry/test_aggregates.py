"""The aggregate views (continuous aggregates with TSL, plain views without) and the aggregate query API."""

import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from psycopg2 import sql

from telemetry.selectors import aggregate_source
from tests.conftest import assert_problem
from tests.factories import DeviceFactory, insert_readings

pytestmark = pytest.mark.django_db

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BASE = datetime(2026, 10, 1, tzinfo=UTC)
AGGREGATES = ["telemetry_1m", "telemetry_1h", "telemetry_1d"]
COLUMNS = ["bucket", "count", "device_id", "max", "metric", "min", "sum"]


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def aggregate_url(device):
    return f"/api/v1/devices/{device.id}/telemetry/aggregate/"


def generate_readings(start, end, step, rng):
    """Readings from ``start`` to ``end`` about every ``step``, with numeric and other metrics."""
    readings, time = [], start
    while time < end:
        metrics = {
            "temp": round(rng.uniform(-20, 40), 3),
            "hum": rng.randint(0, 100),  # integers are numbers too
            "status": rng.choice(["ok", "warn"]),  # not numeric: never aggregated
            "door_open": rng.random() < 0.5,  # booleans are not numbers
            "a": {"b": 1},  # nested: not a top-level number, and not the metric "a.b"
        }
        if rng.random() < 0.3:
            metrics["a.b"] = rng.uniform(0, 1)  # a key with a dot
        if rng.random() < 0.2:
            del metrics["temp"]
        readings.append((time, metrics))
        time += step + timedelta(microseconds=rng.randint(0, 999_999))
    return readings


def expected(readings, start, end, interval, metrics=None):
    """The buckets the API must answer, computed here from the readings."""
    groups = {}
    for time, values in readings:
        bucket = EPOCH + (time - EPOCH) // interval * interval
        if not start <= bucket < end:
            continue
        for metric, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if metrics is None or metric in metrics:
                groups.setdefault((bucket, metric), []).append(value)
    return [
        {
            "bucket": iso(bucket),
            "metric": metric,
            "count": len(values),
            "min": min(values),
            "max": max(values),
            "avg": pytest.approx(sum(values) / len(values), rel=1e-9),
            "sum": pytest.approx(sum(values), rel=1e-9, abs=1e-9),
        }
        for (bucket, metric), values in sorted(groups.items())
    ]


@pytest.fixture
def device():
    return DeviceFactory()


@pytest.fixture
def readings(device):
    """26 days around BASE about every 7 minutes, a burst about every 4 s in BASE+1h..2h, a gap in BASE+5h..8h."""
    rng = random.Random(3)
    readings = generate_readings(BASE - timedelta(days=8), BASE + timedelta(days=18), timedelta(minutes=7), rng)
    readings = [r for r in readings if not BASE + timedelta(hours=5) <= r[0] < BASE + timedelta(hours=8)]
    burst_start = BASE + timedelta(hours=1)
    burst = generate_readings(
        burst_start + timedelta(seconds=1), burst_start + timedelta(hours=1), timedelta(seconds=3), rng
    )
    readings = sorted({time: metrics for time, metrics in readings + burst}.items())
    insert_readings(device, readings)
    insert_readings(DeviceFactory(), readings[:500])  # another device's: never counted
    return readings


@pytest.mark.parametrize(
    ("interval", "duration"),
    [
        ("30s", timedelta(hours=2)),  # raw
        ("90s", timedelta(hours=3)),  # raw: not a multiple of a minute
        ("1m", timedelta(hours=6)),
        ("7m", timedelta(days=1)),  # from 1-minute buckets, but no aggregate bucket is 7 minutes
        ("15m", timedelta(days=2)),
        ("1h", timedelta(days=9)),
        ("90m", timedelta(days=9)),  # from 1-minute buckets, crossing hours
        ("6h", timedelta(days=9)),
        ("1d", timedelta(days=9)),
        ("36h", timedelta(days=9)),  # from 1-hour buckets, crossing days
        ("7d", timedelta(days=9)),  # from 1-day buckets; buckets start on Thursdays (1970-01-01)
    ],
)
def test_aggregate_is_exact_for_every_interval(viewer_client, device, readings, interval, duration):
    # Neither bound is aligned: the first bucket is the first one starting at or after start, and the last one
    # starting before end covers its whole interval, past end.
    start = BASE + timedelta(minutes=47, seconds=31, microseconds=5)
    end = start + duration
    params = {"start": iso(start), "end": iso(end), "interval": interval}

    response = viewer_client.get(aggregate_url(device), params)

    assert response.status_code == 200, response.content
    step = {"s": 1, "m": 60, "h": 3600, "d": 86400}[interval[-1]] * int(interval[:-1])
    want = expected(readings, start, end, timedelta(seconds=step))
    assert len(want) >= 3  # several buckets or metrics, and never vacuous
    body = response.json()
    assert body.pop("complete_until", "absent") != "absent"
    assert body == {"interval": interval, "start": iso(start), "end": iso(end), "results": want}


def test_aggregate_filters_metrics_and_treats_dotted_names_as_keys(viewer_client, device, readings):
    start, end = BASE, BASE + timedelta(days=2)
    params = {"start": iso(start), "end": iso(end), "interval": "6h", "metrics": "a.b,status,hum"}

    results = viewer_client.get(aggregate_url(device), params).json()["results"]

    assert results == expected(readings, start, end, timedelta(hours=6), metrics={"a.b", "hum"})
    assert {item["metric"] for item in results} == {"a.b", "hum"}  # status is not numeric


def test_buckets_without_data_are_absent(viewer_client, device, readings):
    params = {"start": iso(BASE), "end": iso(BASE + timedelta(hours=10)), "interval": "1h"}

    buckets = {item["bucket"] for item in viewer_client.get(aggregate_url(device), params).json()["results"]}

    assert buckets == {iso(BASE + timedelta(hours=h)) for h in (0, 1, 2, 3, 4, 8, 9)}


def test_only_numeric_top_level_metrics_are_aggregated(viewer_client, device):
    insert_readings(
        device,
        [
            (BASE, {"n": 1, "s": "2", "b": True, "o": {"n": 3}, "x.y": 4}),
            (BASE + timedelta(seconds=1), {"n": 2.5, "s": "x", "b": False, "x": {"y": 10}}),
        ],
    )
    params = {"start": iso(BASE), "end": iso(BASE + timedelta(minutes=1)), "interval": "1m"}

    results = viewer_client.get(aggregate_url(device), params).json()["results"]

    assert results == [
        {"bucket": iso(BASE), "metric": "n", "count": 2, "min": 1.0, "max": 2.5, "avg": 1.75, "sum": 3.5},
        {"bucket": iso(BASE), "metric": "x.y", "count": 1, "min": 4.0, "max": 4.0, "avg": 4.0, "sum": 4.0},
    ]


def test_at_most_10000_buckets(viewer_client, device):
    start = BASE + timedelta(seconds=30)  # buckets start at BASE+1m, ..., BASE+10000m
    at_limit = {"start": iso(start), "end": iso(start + timedelta(minutes=10_000)), "interval": "1m"}
    assert viewer_client.get(aggregate_url(device), at_limit).status_code == 200

    over = {**at_limit, "end": iso(start + timedelta(minutes=10_001))}
    body = assert_problem(viewer_client.get(aggregate_url(device), over), 400, "invalid_parameter")
    assert body["errors"] == [
        {
            "parameter": "interval",
            "detail": "10001 buckets between start and end; at most 10,000: widen the interval.",
            "code": "too_many_buckets",
        }
    ]


@pytest.mark.parametrize(
    ("params", "parameters"),
    [
        ({"interval": "0m"}, ["interval"]),
        ({"interval": "1w"}, ["interval"]),
        ({"interval": "1.5h"}, ["interval"]),
        ({"interval": "-1m"}, ["interval"]),
        ({"interval": "15"}, ["interval"]),
        ({"interval": "1M"}, ["interval"]),
        ({"interval": " 1m"}, ["interval"]),
        ({"start": "2026-10-01"}, ["start"]),
        ({"end": "2026-10-01T00:00:00+01:00"}, ["end"]),
        ({"end": "2026-10-01T00:00:00Z"}, ["end"]),  # not after start
        ({"metrics": "a b"}, ["metrics"]),
        ({"start": None, "end": None, "interval": None}, ["start", "end", "interval"]),
    ],
)
def test_bad_parameters_are_problems_naming_them(viewer_client, device, params, parameters):
    good = {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z", "interval": "1h"}
    query = {name: value for name, value in {**good, **params}.items() if value is not None}

    body = assert_problem(viewer_client.get(aggregate_url(device), query), 400, "invalid_parameter")

    assert sorted(error["parameter"] for error in body["errors"]) == sorted(parameters)


@pytest.mark.parametrize(
    ("interval", "source"),
    [
        (timedelta(seconds=30), None),
        (timedelta(seconds=90), None),
        (timedelta(minutes=1), "telemetry_1m"),
        (timedelta(minutes=7), "telemetry_1m"),
        (timedelta(minutes=90), "telemetry_1m"),
        (timedelta(hours=6), "telemetry_1h"),
        (timedelta(hours=36), "telemetry_1h"),
        (timedelta(days=1), "telemetry_1d"),
        (timedelta(days=7), "telemetry_1d"),
    ],
)
def test_the_coarsest_aggregate_dividing_the_interval_serves_it(interval, source):
    assert aggregate_source(interval) == source


# The aggregates in the database


def rows_of(view, device):
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT bucket, metric, count, min, max, sum FROM {} WHERE device_id = %s ORDER BY 1, 2").format(
                sql.Identifier(view)
            ),
            [device.id],
        )
        return [
            {"bucket": iso(bucket), "metric": metric, "count": count, "min": low, "max": high, "sum": total}
            for bucket, metric, count, low, high, total in cursor.fetchall()
        ]


@pytest.mark.parametrize(
    ("view", "width"),
    [("telemetry_1m", timedelta(minutes=1)), ("telemetry_1h", timedelta(hours=1)), ("telemetry_1d", timedelta(days=1))],
)
def test_each_aggregate_holds_count_sum_min_max_per_bucket_and_metric(device, view, width):
    readings = generate_readings(BASE, BASE + timedelta(days=2), timedelta(seconds=41), random.Random(view))
    insert_readings(device, readings)

    want = [
        {k: v for k, v in bucket.items() if k != "avg"}
        for bucket in expected(readings, EPOCH, BASE + timedelta(days=3), width)
    ]
    assert rows_of(view, device) == want


def test_aggregates_have_the_same_columns_on_every_edition():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, array_agg(column_name::text ORDER BY column_name) FROM information_schema.columns"
            " WHERE table_name = ANY(%s) GROUP BY 1 ORDER BY 1",
            [AGGREGATES],
        )
        assert cursor.fetchall() == [(name, COLUMNS) for name in sorted(AGGREGATES)]


def test_without_tsl_the_aggregates_are_plain_views(timescaledb_edition):
    if timescaledb_edition == "timescale":
        pytest.skip("this build has TSL: continuous aggregates instead")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relname = ANY(%s) AND relkind = 'v' ORDER BY 1", [AGGREGATES]
        )
        assert [name for (name,) in cursor.fetchall()] == sorted(AGGREGATES)


@pytest.mark.tsl
def test_with_tsl_the_aggregates_are_hierarchical_real_time_continuous_aggregates():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT view_name, materialized_only, view_definition FROM timescaledb_information.continuous_aggregates"
            " WHERE view_name = ANY(%s) ORDER BY 1",
            [AGGREGATES],
        )
        rows = {name: (materialized_only, definition) for name, materialized_only, definition in cursor.fetchall()}
    assert sorted(rows) == sorted(AGGREGATES)
    assert not any(materialized_only for materialized_only, _ in rows.values())
    # pg_get_viewdef may parenthesise the FROM clause: `FROM (telemetry t CROSS JOIN LATERAL …)`.
    assert re.search(r"FROM \(*telemetry t\b", rows["telemetry_1m"][1])
    assert re.search(r"FROM \(*telemetry_1m\b", rows["telemetry_1h"][1])
    assert re.search(r"FROM \(*telemetry_1h\b", rows["telemetry_1d"][1])


# Refreshing (TSL): the test data lies years before every other test's, so moving the aggregates' watermark
# here leaves the others' readings in the real-time part.

TSL_BASE = datetime(2020, 3, 2, tzinfo=UTC)


def refresh(start, end):
    with connection.cursor() as cursor:
        for view in AGGREGATES:
            cursor.execute("CALL refresh_continuous_aggregate(%s, %s, %s)", [view, start, end])


def materialized_rows(view):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT materialization_hypertable_schema, materialization_hypertable_name"
            " FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
            [view],
        )
        cursor.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(*map(sql.Identifier, cursor.fetchone())))
        return cursor.fetchone()[0]


@pytest.mark.tsl
@pytest.mark.django_db(transaction=True)
def test_refreshed_aggregates_equal_raw_data_and_late_data_needs_an_explicit_refresh(viewer_client):
    device = DeviceFactory()
    readings = generate_readings(TSL_BASE, TSL_BASE + timedelta(days=3), timedelta(minutes=3), random.Random(7))
    insert_readings(device, readings)
    start, end = TSL_BASE, TSL_BASE + timedelta(days=3)
    refresh(start, end)
    assert all(materialized_rows(view) > 0 for view in AGGREGATES)

    for interval, width in [("7m", timedelta(minutes=7)), ("1h", timedelta(hours=1)), ("1d", timedelta(days=1))]:
        params = {"start": iso(start), "end": iso(end), "interval": interval}
        assert viewer_client.get(aggregate_url(device), params).json()["results"] == expected(
            readings, start, end, width
        )

    # A late reading inside the materialized window: not seen until that window is refreshed again.
    late = [(TSL_BASE + timedelta(hours=5, seconds=1), {"temp": 1000.0})]
    insert_readings(device, late)
    params = {"start": iso(start), "end": iso(end), "interval": "1h"}
    stale = viewer_client.get(aggregate_url(device), params).json()["results"]
    assert stale == expected(readings, start, end, timedelta(hours=1))

    refresh(TSL_BASE, TSL_BASE + timedelta(days=1))
    fresh = viewer_client.get(aggregate_url(device), params).json()["results"]
    assert fresh == expected(readings + late, start, end, timedelta(hours=1))
    assert fresh != stale
