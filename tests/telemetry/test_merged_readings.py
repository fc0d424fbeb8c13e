"""Readings with the device and time of a stored one (issue 12, item 9): one adding metrics is merged into it, one
adding none is a duplicate, one holding a metric with another value is a 409 and nothing of its request is stored;
the rules evaluate the merged metrics only, and the aggregates count them (both editions)."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import orjson
import pytest
from django.db import connection

from rules.models import Event, EventStatus
from rules.triggers import merged_readings_body, trigger_body
from telemetry import timescale
from telemetry.ingest.services import Ingested, reading_ingest, same_value
from telemetry.models import Telemetry
from tests.conftest import assert_problem
from tests.factories import DeviceFactory, RuleFactory
from tests.telemetry.test_aggregates import rows_of

pytestmark = pytest.mark.django_db

URL = "/api/v1/telemetry/ingest/"


def iso(time):
    return time.isoformat().replace("+00:00", "Z")


def minutes_ago(minutes):
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes)


def reading(device, time, **metrics):
    return {"device_id": str(device.id), "timestamp": iso(time), "metrics": metrics}


def post(client, payload):
    return client.post(URL, data=orjson.dumps(payload), content_type="application/json")


def answer(accepted=0, merged=0, duplicates=0):
    return {"accepted": accepted, "merged": merged, "duplicates": duplicates}


def stored(device):
    return dict(Telemetry.objects.filter(device=device).order_by("time").values_list("time", "metrics"))


@pytest.fixture
def device():
    return DeviceFactory()


class TestMerge:
    def test_a_reading_with_other_metrics_is_merged_into_the_stored_one(self, api_client, device):
        time = minutes_ago(1)
        assert post(api_client, reading(device, time, temp=21.5)).json() == answer(accepted=1)

        response = post(api_client, reading(device, time, humidity=40))

        assert response.status_code == 201, response.content
        assert response.json() == answer(merged=1)
        assert stored(device) == {time: {"temp": 21.5, "humidity": 40}}

    def test_a_batch_merges_into_stored_readings_and_stores_new_ones(self, api_client, device):
        time, other = minutes_ago(2), minutes_ago(1)
        post(api_client, reading(device, time, temp=20))

        response = post(api_client, [reading(device, other, temp=21), reading(device, time, humidity=41)])

        assert response.json() == answer(accepted=1, merged=1)
        assert stored(device) == {time: {"temp": 20, "humidity": 41}, other: {"temp": 21}}

    def test_readings_of_one_device_and_time_in_one_batch_combine(self, api_client, device):
        time = minutes_ago(1)
        batch = [
            reading(device, time, temp=20),
            reading(device, time, humidity=41),  # adds a metric: merged
            reading(device, time, temp=20.0),  # adds none (20 = 20.0): a duplicate
            reading(device, time, pressure=1013, humidity=41),  # adds one, shares an equal one: merged
        ]

        assert post(api_client, batch).json() == answer(accepted=1, merged=2, duplicates=1)
        assert stored(device) == {time: {"temp": 20, "humidity": 41, "pressure": 1013}}
        # The same batch again adds nothing: every reading is a duplicate.
        assert post(api_client, batch).json() == answer(duplicates=4)

    def test_a_combined_batch_row_merges_into_the_stored_reading(self, api_client, device):
        time = minutes_ago(1)
        post(api_client, reading(device, time, temp=20))

        response = post(api_client, [reading(device, time, temp=20), reading(device, time, humidity=41)])

        # The combined reading counts as its first one: merged, and so is the second, which added a metric.
        assert response.json() == answer(merged=2)
        assert stored(device) == {time: {"temp": 20, "humidity": 41}}

    def test_partial_overlap_with_equal_values_merges_and_a_subset_is_a_duplicate(self, api_client, device):
        time = minutes_ago(1)
        post(api_client, reading(device, time, temp=20, power={"volts": 230, "amps": 1.5}))

        assert post(api_client, reading(device, time, temp=20.0, humidity=41)).json() == answer(merged=1)
        assert post(api_client, reading(device, time, humidity=41)).json() == answer(duplicates=1)
        assert post(api_client, reading(device, time, power={"amps": 1.5, "volts": 230})).json() == answer(duplicates=1)
        assert stored(device) == {time: {"temp": 20, "humidity": 41, "power": {"volts": 230, "amps": 1.5}}}

    def test_an_identical_resend_stays_a_duplicate(self, api_client, device):
        payload = reading(device, minutes_ago(1), temp=20, ok=True)
        assert post(api_client, payload).json() == answer(accepted=1)
        assert post(api_client, payload).json() == answer(duplicates=1)
        assert post(api_client, [payload, payload]).json() == answer(duplicates=2)


class TestConflict:
    def test_a_metric_with_another_value_is_a_409_naming_the_reading_and_metric(self, api_client, device):
        time = minutes_ago(1)
        post(api_client, reading(device, time, temp=20))

        response = post(api_client, reading(device, time, temp=25, humidity=41))

        body = assert_problem(response, 409, code="reading_conflict")
        assert [(error["pointer"], error["code"]) for error in body["errors"]] == [
            ("/metrics/temp", "reading_conflict")
        ]
        assert '"temp"' in body["detail"]
        assert stored(device) == {time: {"temp": 20}}  # humidity neither

    def test_a_conflict_in_a_batch_stores_nothing_of_it(self, api_client, device):
        time, other = minutes_ago(2), minutes_ago(1)
        post(api_client, reading(device, time, temp=20, ok=True))
        batch = [
            reading(device, other, temp=21),  # new
            reading(device, time, humidity=41),  # would merge
            reading(device, time, ok=1),  # a number is not the boolean stored
            reading(device, time, temp=20, door="open"),  # would merge
        ]

        body = assert_problem(post(api_client, batch), 409, code="reading_conflict")

        assert [error["pointer"] for error in body["errors"]] == ["/2/metrics/ok"]
        assert stored(device) == {time: {"temp": 20, "ok": True}}

    def test_conflicting_readings_within_one_batch_are_409s_and_nothing_is_stored(self, api_client, device):
        time = minutes_ago(1)
        batch = [
            reading(device, minutes_ago(2), temp=19),
            reading(device, time, temp=20, ok=True),
            reading(device, time, temp=20.5),
            reading(device, time, ok=1, humidity=41),
        ]

        body = assert_problem(post(api_client, batch), 409, code="reading_conflict")

        assert [error["pointer"] for error in body["errors"]] == ["/2/metrics/temp", "/3/metrics/ok"]
        assert "/1" in body["errors"][0]["detail"]
        assert stored(device) == {}

    def test_an_unknown_device_in_a_conflicting_batch_is_the_400(self, api_client, device):
        time = minutes_ago(1)
        unknown = SimpleNamespace(id=uuid.uuid4())
        batch = [reading(device, time, temp=20), reading(device, time, temp=21), reading(unknown, time, temp=1)]
        body = assert_problem(post(api_client, batch), 400, code="invalid")
        assert [error["pointer"] for error in body["errors"]] == ["/2/device_id"]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (20, 20.0, True),
        (1, True, False),
        (0, False, False),
        ("1", 1, False),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": True}, {"a": 1}, False),
        (True, True, True),
    ],
)
def test_values_compare_as_jsonb_does(a, b, same):
    assert same_value(a, b) is same
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::jsonb = %s::jsonb", [orjson.dumps(a).decode(), orjson.dumps(b).decode()])
        assert cursor.fetchone()[0] is same


# The rules ---------------------------------------------------------------------------------------------------------


def ingest(device, time, **metrics):
    return reading_ingest(payload=reading(device, time, **metrics))


def test_the_rules_evaluate_the_merged_metrics_only():
    device = DeviceFactory()
    temp = RuleFactory(metric="temp", threshold=30)  # dedupe: a repeat would bump occurrence_count
    humidity = RuleFactory(metric="humidity", threshold=80)
    time = minutes_ago(3)
    assert ingest(device, time, temp=40) == Ingested(1, 0, 0)

    assert ingest(device, time, humidity=90) == Ingested(0, 1, 0)
    assert ingest(device, time, pressure=1) == Ingested(0, 1, 0)

    event = Event.objects.get(rule=temp)
    assert (event.occurrence_count, event.triggered_at) == (1, time)
    event = Event.objects.get(rule=humidity)
    assert (event.occurrence_count, event.triggered_at, event.trigger_values["value"]) == (1, time, 90)


def test_a_merged_metric_resolves_in_reading_time():
    device = DeviceFactory()
    rule = RuleFactory(metric="temp", threshold=30, auto_resolve=True)
    opened, older, newer = minutes_ago(10), minutes_ago(12), minutes_ago(5)
    ingest(device, opened, temp=40)
    ingest(device, older, humidity=50)
    ingest(device, newer, humidity=50)

    ingest(device, older, temp=20)  # older than the breach: resolves nothing
    assert Event.objects.get(rule=rule).status == EventStatus.OPEN

    ingest(device, newer, temp=20)
    event = Event.objects.get(rule=rule)
    assert event.status == EventStatus.RESOLVED
    assert iso(newer) in event.resolved_note


def test_a_merged_metric_completes_a_duration_in_reading_time():
    device = DeviceFactory()
    rule = RuleFactory(metric="temp", threshold=30, for_seconds=60)
    start = minutes_ago(10)
    ingest(device, start, temp=40)
    ingest(device, start + timedelta(seconds=90), humidity=50)
    assert not Event.objects.filter(rule=rule).exists()

    ingest(device, start + timedelta(seconds=90), temp=45)

    event = Event.objects.get(rule=rule)
    assert (event.triggered_at, event.trigger_values["value"], event.occurrence_count) == (start, 40, 2)


def test_an_update_in_sql_evaluates_the_metrics_it_adds_and_not_the_ones_it_changes():
    device = DeviceFactory()
    rule = RuleFactory(metric="temp", threshold=30)
    time = minutes_ago(1)
    ingest(device, time, humidity=50)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE telemetry SET metrics = metrics || '{\"temp\": 40}' WHERE device_id = %s", [str(device.id)]
        )
        assert Event.objects.get(rule=rule).occurrence_count == 1
        cursor.execute(
            "UPDATE telemetry SET metrics = metrics || '{\"temp\": 41}' WHERE device_id = %s", [str(device.id)]
        )
    assert Event.objects.get(rule=rule).occurrence_count == 1


# The aggregates ----------------------------------------------------------------------------------------------------


def test_the_aggregates_count_merged_metrics_at_every_level_after_a_refresh(committed_aggregates, api_client):
    device = DeviceFactory()
    time = (datetime.now(UTC) - timedelta(days=3)).replace(hour=12, minute=0, second=0, microsecond=0)
    post(api_client, reading(device, time, temp=20))
    timescale.refresh_aggregates(**timescale.configured())  # the bucket is materialized: a merge must invalidate it
    assert [row["metric"] for row in rows_of("telemetry_1m", device)] == ["temp"]

    assert post(api_client, reading(device, time, humidity=41)).json() == answer(merged=1)
    timescale.refresh_aggregates(**timescale.configured())

    for view, width in (("telemetry_1m", "minute"), ("telemetry_1h", "hour"), ("telemetry_1d", "day")):
        rows = [(row["bucket"], row["metric"], row["count"], row["sum"]) for row in rows_of(view, device)]
        bucket = iso(time.replace(hour=0) if width == "day" else time)
        assert rows == [(bucket, "humidity", 1, 41.0), (bucket, "temp", 1, 20.0)], view


# Concurrency -------------------------------------------------------------------------------------------------------


def _in_threads(*work):
    """Runs each callable in its own thread (its own Django connection), all released at once."""
    barrier = threading.Barrier(len(work))

    def run(function):
        try:
            barrier.wait(timeout=10)
            return function()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(work)) as pool:
        return [future.result(timeout=60) for future in [pool.submit(run, function) for function in work]]


@pytest.mark.django_db(transaction=True)
def test_concurrent_merges_into_one_reading_lose_no_metric_and_do_not_deadlock(settings):
    settings.INGEST_DEVICE_RATE = (1_000_000, 1)  # 120 requests a device in a few seconds: not the rate's test
    first, second = DeviceFactory(), DeviceFactory()
    rule = RuleFactory(metric="y", threshold=0, dedupe=False)
    start = minutes_ago(30)
    for round_ in range(40):
        time = start + timedelta(seconds=round_)
        # Two batches writing the same two readings in opposite orders, and a single reading of one of them.
        outcomes = _in_threads(
            lambda time=time: reading_ingest(payload=[reading(first, time, x=1), reading(second, time, x=1)]),
            lambda time=time: reading_ingest(payload=[reading(second, time, y=2), reading(first, time, y=2)]),
            lambda time=time: reading_ingest(payload=reading(first, time, z=3)),
        )
        assert sum(outcome.accepted for outcome in outcomes) == 2
        assert sum(outcome.merged for outcome in outcomes) == 3
    assert list(stored(first).values()) == [{"x": 1, "y": 2, "z": 3}] * 40
    assert list(stored(second).values()) == [{"x": 1, "y": 2}] * 40
    assert Event.objects.filter(rule=rule).count() == 80  # y evaluated once per reading, merged or not


# One source for the evaluation --------------------------------------------------------------------------------------


def test_the_update_trigger_runs_the_insert_trigger_s_body_over_the_added_metrics():
    body = trigger_body("telemetry_evaluate_rules")
    merged = merged_readings_body(body)
    code = "\n".join(line.split("--")[0] for line in merged.splitlines())
    assert "new_rows" not in code
    assert code.count("merged_rows m JOIN stored_rows s") == body.count("new_rows n") > 0
    assert merged.startswith("IF NOT EXISTS (SELECT FROM merged_rows) THEN")
    # Any other way of naming the readings would be left reading every metric of the updated rows: refused.
    with pytest.raises(ValueError, match="new_rows"):
        merged_readings_body(
            body.replace(
                "FROM new_rows n WHERE n.metrics @@ prefilter", "FROM new_rows AS r WHERE r.metrics @@ prefilter"
            )
        )
