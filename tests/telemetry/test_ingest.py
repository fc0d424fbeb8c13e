"""POST /api/v1/telemetry/ingest/: unauthenticated ingest of one reading or a batch, all-or-nothing."""

import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.conf import settings as django_settings
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext

from telemetry import timescale
from telemetry.ingest.services import INSERT_READINGS, InvalidReadings, insert_readings_parameters, reading_ingest
from telemetry.ingest.validation import MAX_MAGNITUDE
from telemetry.models import DeviceStatus, Telemetry
from tests.conftest import assert_problem, connect_separately
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/telemetry/ingest/"


def iso(time):
    return time.isoformat().replace("+00:00", "Z")


def ago(**delta):
    """A timestamp that far before now, computed at call time (limits are relative to the request's now)."""
    return iso(datetime.now(UTC).replace(microsecond=0) - timedelta(**delta))


def seconds_apart(count):
    """``count`` distinct timestamps a second apart, newest first, from one reading of the clock: calling ago() per
    reading could give two the same second when the clock passes a second boundary while the batch is built."""
    now = datetime.now(UTC).replace(microsecond=0)
    return [iso(now - timedelta(seconds=index)) for index in range(count)]


def reading(device, timestamp=None, **metrics):
    return {"device_id": str(device.id), "timestamp": timestamp or ago(minutes=1), "metrics": metrics or {"t": 1}}


def _oldest_countable(now):
    return timescale.oldest_countable(
        now,
        retention_days=django_settings.TELEMETRY_RETENTION_DAYS,
        aggregate_retention_days=django_settings.TELEMETRY_AGGREGATE_RETENTION_DAYS,
    )


def post(client, payload, **extra):
    return client.post(URL, data=orjson.dumps(payload), content_type="application/json", **extra)


def post_raw(client, body, content_type="application/json"):
    return client.post(URL, data=body, content_type=content_type)


def stored():
    return {(str(row.device_id), row.time): row.metrics for row in Telemetry.objects.all()}


def assert_refused(response, *pointers, code=None):
    """A 400 ``invalid`` problem naming exactly these pointers (in body order), and nothing stored."""
    body = assert_problem(response, 400, "invalid")
    assert [error["pointer"] for error in body["errors"]] == list(pointers), body["errors"]
    if code is not None:
        assert {error["code"] for error in body["errors"]} == {code}, body["errors"]
    assert not Telemetry.objects.exists()
    return body


@pytest.fixture
def device():
    return DeviceFactory()


class TestAccepted:
    def test_a_single_reading_is_stored(self, api_client, device):
        timestamp = ago(minutes=3)
        metrics = {"temperature": 21.5, "count": 3, "door_open": False, "mode": "eco", "power": {"voltage": 229.8}}
        response = post(api_client, reading(device, timestamp, **metrics))
        assert response.status_code == 201, response.content
        assert response.json() == {"accepted": 1, "merged": 0, "duplicates": 0}
        assert stored() == {(str(device.id), datetime.fromisoformat(timestamp)): metrics}
        assert Telemetry.objects.get().received_at is not None

    def test_a_batch_of_1000_is_stored(self, api_client, device):
        batch = [reading(device, timestamp, n=index) for index, timestamp in enumerate(seconds_apart(1000))]
        response = post(api_client, batch)
        assert response.status_code == 201, response.content
        assert response.json() == {"accepted": 1000, "merged": 0, "duplicates": 0}
        rows = stored()
        assert len(rows) == 1000
        assert sorted(metrics["n"] for metrics in rows.values()) == list(range(1000))

    def test_a_batch_may_span_devices(self, api_client, device):
        other = DeviceFactory()
        response = post(api_client, [reading(device), reading(other)])
        assert response.json() == {"accepted": 2, "merged": 0, "duplicates": 0}
        assert {device_id for device_id, _ in stored()} == {str(device.id), str(other.id)}

    def test_an_invalid_authorization_header_is_ignored(self, api_client, device):
        response = post(api_client, reading(device), HTTP_AUTHORIZATION="Bearer not-a-token")
        assert response.status_code == 201, response.content
        assert Telemetry.objects.count() == 1

    def test_a_device_in_maintenance_is_accepted(self, api_client):
        device = DeviceFactory(status=DeviceStatus.MAINTENANCE)
        assert post(api_client, reading(device)).status_code == 201
        assert Telemetry.objects.count() == 1

    def test_an_uppercase_device_id_names_the_same_device(self, api_client, device):
        payload = {**reading(device), "device_id": str(device.id).upper()}
        assert post(api_client, payload).status_code == 201

    @pytest.mark.parametrize(
        "metrics",
        [
            pytest.param({"a": 2**53, "b": -(2**53)}, id="integers at ±2^53"),
            pytest.param({"s": "x" * 256}, id="a string of 256 characters"),
            pytest.param({f"m{index}": index for index in range(100)}, id="100 keys"),
            pytest.param({"_a.b-c": 1, "x" * 64: 2}, id="names at the edges of the pattern"),
            pytest.param({"a": {"b": {"c": {"d": 1}}}}, id="objects nested 3 deep"),
            pytest.param({"a": {}}, id="an empty nested object"),
            pytest.param({"f": 21.5, "g": -0.25, "h": 1e-7}, id="floats"),
        ],
    )
    def test_values_at_the_limits_are_accepted(self, api_client, device, metrics):
        response = post(api_client, reading(device, **metrics))
        assert response.status_code == 201, response.content
        assert list(stored().values()) == [metrics]

    @pytest.mark.parametrize("suffix", ["Z", "+00:00", ".123456Z", ".5+00:00"])
    def test_utc_timestamps_are_accepted(self, api_client, device, suffix):
        base = ago(hours=1).removesuffix("Z")
        response = post(api_client, reading(device, base + suffix))
        assert response.status_code == 201, response.content
        assert [time for _, time in stored()] == [datetime.fromisoformat(base + suffix)]

    def test_up_to_5_minutes_in_the_future_is_accepted(self, api_client, device):
        assert post(api_client, reading(device, ago(minutes=-4))).status_code == 201

    def test_readings_the_aggregates_can_still_count_are_accepted(self, api_client, device, settings):
        settings.TELEMETRY_RETENTION_DAYS = 7
        # The bound only moves forward with time: the one of a moment after the request is the request's or later.
        inside = _oldest_countable(datetime.now(UTC) + timedelta(seconds=5)) + timedelta(microseconds=1)
        assert post(api_client, reading(device, iso(inside))).status_code == 201


class TestDuplicates:
    """Identical readings. Readings of one device and time that merge or conflict: test_merged_readings.py."""

    def test_a_repeat_in_one_batch_is_a_duplicate(self, api_client, device):
        time = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
        batch = [
            reading(device, iso(time), v=1),
            reading(device, ago(minutes=1), v=2),
            # The same instant written differently is the same reading.
            reading(device, time.isoformat(timespec="microseconds"), v=1),
        ]
        response = post(api_client, batch)
        assert response.status_code == 201, response.content
        assert response.json() == {"accepted": 2, "merged": 0, "duplicates": 1}
        assert stored()[(str(device.id), time)] == {"v": 1}
        assert Telemetry.objects.count() == 2

    def test_a_resent_reading_is_counted_not_stored(self, api_client, device):
        timestamp = ago(minutes=1)
        assert post(api_client, reading(device, timestamp, v=1)).json() == {"accepted": 1, "merged": 0, "duplicates": 0}
        response = post(api_client, reading(device, timestamp, v=1))
        assert response.status_code == 201
        assert response.json() == {"accepted": 0, "merged": 0, "duplicates": 1}
        assert list(stored().values()) == [{"v": 1}]

    def test_a_batch_of_only_duplicates_is_201_with_nothing_accepted(self, api_client, device):
        batch = [reading(device, ago(minutes=minutes), v=minutes) for minutes in (1, 2, 3)]
        post(api_client, batch)
        response = post(api_client, [*batch, batch[0]])
        assert response.status_code == 201
        assert response.json() == {"accepted": 0, "merged": 0, "duplicates": 4}
        assert Telemetry.objects.count() == 3

    def test_a_batch_mixing_new_and_stored_readings_counts_each(self, api_client, device):
        old = reading(device, ago(minutes=1))
        post(api_client, old)
        response = post(api_client, [old, reading(device, ago(minutes=2))])
        assert response.json() == {"accepted": 1, "merged": 0, "duplicates": 1}


class TestAllOrNothing:
    def test_a_mixed_batch_stores_nothing_and_lists_every_problem(self, api_client, device):
        retired = DeviceFactory(status=DeviceStatus.RETIRED)
        batch = [
            reading(device),
            reading(device, ago(minutes=2).removesuffix("Z")),  # naive
            reading(device, ago(minutes=3)),
            {**reading(device, ago(minutes=4), temp=None, ok=1, bad=[1]), "extra": True},
            reading(retired),
            {"device_id": str(uuid.uuid4()), "timestamp": "yesterday"},  # unknown device, bad time, no metrics
            reading(device, ago(minutes=6)),
        ]
        body = assert_refused(
            post(api_client, batch),
            "/1/timestamp",
            "/3/extra",
            "/3/metrics/temp",
            "/3/metrics/bad",
            "/4/device_id",
            "/5/timestamp",
            "/5/metrics",
            "/5/device_id",
        )
        codes = [error["code"] for error in body["errors"]]
        assert codes == [
            "invalid",
            "unknown_field",
            "null",
            "invalid",
            "device_not_ingesting",
            "invalid",
            "required",
            "unknown_device",
        ]
        assert body["detail"] == "8 problems in the request; see errors."
        assert all(error["detail"] for error in body["errors"])

    def test_a_single_reading_points_without_an_index(self, api_client, device):
        body = assert_refused(post(api_client, reading(device, "2026-01-01T00:00:00")), "/timestamp")
        assert body["detail"] == body["errors"][0]["detail"]


class TestTimestamps:
    @pytest.mark.parametrize(
        "timestamp",
        [
            "2026-11-01T12:00:00",  # naive
            "2026-11-01T13:00:00+01:00",
            "2026-11-01T07:00:00-05:00",
            "2026-11-01T12:00:00-00:00",  # RFC 3339's "unknown offset"
            "2026-11-01T12:00:00.1234567Z",  # 7 fractional digits
            "2026-11-01 12:00:00Z",
            "2026-11-01t12:00:00z",
            "2026-11-01",
            "2026-W44-7T12:00:00Z",
            "2026-02-30T12:00:00Z",
            "2026-11-01T24:00:00Z",
            "2026-11-01T12:00:00Z\n",
            "",
            1793534400,
            None,
        ],
        ids=repr,
    )
    def test_anything_but_an_rfc3339_utc_time_is_refused(self, api_client, device, timestamp):
        # Fixed dates would age out of the retention window: move the date part to yesterday's.
        if isinstance(timestamp, str) and timestamp.startswith("2026-11-01"):
            timestamp = timestamp.replace("2026-11-01", ago(days=1)[:10])
        assert_refused(post(api_client, {**reading(device), "timestamp": timestamp}), "/timestamp", code="invalid")

    def test_more_than_5_minutes_in_the_future_is_refused(self, api_client, device):
        assert_refused(post(api_client, reading(device, ago(minutes=-6))), "/timestamp", code="future")

    def test_older_than_the_retention_window_is_refused(self, api_client, device, settings):
        settings.TELEMETRY_RETENTION_DAYS = 7
        body = assert_refused(post(api_client, reading(device, ago(days=7, minutes=1))), "/timestamp", code="too_old")
        assert "7 days" in body["errors"][0]["detail"]

    @pytest.mark.parametrize("settings_days", [7, 90])
    def test_older_than_the_aggregates_can_count_is_refused(self, api_client, device, settings, settings_days):
        """Inside the raw retention, but too old for some aggregate level's refresh to count it."""
        settings.TELEMETRY_RETENTION_DAYS = settings_days
        outside = _oldest_countable(datetime.now(UTC)) - timedelta(microseconds=1)
        issue_example = datetime.now(UTC) - timedelta(days=settings_days, minutes=-20)  # 20 min inside retention
        for moment in (outside, issue_example):
            body = assert_refused(post(api_client, reading(device, iso(moment))), "/timestamp", code="too_old")
            assert "the oldest time the aggregates still count" in body["errors"][0]["detail"]


class TestMetrics:
    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
    def test_non_finite_numbers_are_refused(self, api_client, device, literal):
        body = f'{{"device_id": "{device.id}", "timestamp": "{ago(minutes=1)}", "metrics": {{"t": {literal}}}}}'
        assert_problem(post_raw(api_client, body), 400, "parse_error")
        assert not Telemetry.objects.exists()

    @pytest.mark.parametrize(
        "value",
        [1.7976931348623157e308, -1.7976931348623157e308, math.nextafter(MAX_MAGNITUDE, math.inf), -1e300],
        ids=repr,
    )
    def test_numbers_beyond_the_bound_that_keeps_sums_finite_are_refused(self, api_client, device, value):
        body = assert_refused(post(api_client, reading(device, x=value)), "/metrics/x", code="out_of_range")
        assert "1e+288" in body["errors"][0]["detail"]

    def test_a_batch_with_one_huge_number_is_refused_whole(self, api_client, device):
        batch = [reading(device, ago(minutes=2), x=1.0), reading(device, x=1.7976931348623157e308)]
        assert_refused(post(api_client, batch), "/1/metrics/x", code="out_of_range")
        nested = [reading(device, ago(minutes=2), a={"b": -1.7976931348623157e308})]
        assert_refused(post(api_client, nested), "/0/metrics/a/b", code="out_of_range")

    @pytest.mark.parametrize("value", [MAX_MAGNITUDE, -MAX_MAGNITUDE], ids=repr)
    def test_numbers_at_the_bound_are_accepted(self, api_client, device, value):
        assert post(api_client, reading(device, x=value)).status_code == 201
        [metrics] = stored().values()
        assert float(metrics["x"]) == value  # jsonb writes 1e288 out as an integer of 289 digits

    @pytest.mark.parametrize("value", [2**53 + 1, -(2**53) - 1, 2**63 - 1])
    def test_integers_beyond_2_53_are_refused(self, api_client, device, value):
        assert_refused(post(api_client, reading(device, big=value)), "/metrics/big", code="out_of_range")

    def test_nul_in_a_string_is_refused(self, api_client, device):
        body = f'{{"device_id": "{device.id}", "timestamp": "{ago(minutes=1)}", "metrics": {{"s": "a\\u0000b"}}}}'
        assert_refused(post_raw(api_client, body), "/metrics/s", code="invalid")

    def test_nul_in_a_nested_string_is_refused(self, api_client, device):
        assert_refused(post(api_client, reading(device, o={"s": "a\x00"})), "/metrics/o/s", code="invalid")

    def test_nul_in_a_key_is_refused(self, api_client, device):
        body = f'{{"device_id": "{device.id}", "timestamp": "{ago(minutes=1)}", "metrics": {{"a\\u0000": 1}}}}'
        assert_refused(post_raw(api_client, body), "/metrics/a\x00", code="invalid_name")

    def test_101_keys_are_refused(self, api_client, device):
        metrics = {f"m{index}": index for index in range(101)}
        assert_refused(post(api_client, reading(device, **metrics)), "/metrics", code="too_many_keys")

    def test_101_keys_in_a_nested_object_are_refused(self, api_client, device):
        nested = {f"m{index}": index for index in range(101)}
        assert_refused(post(api_client, reading(device, o=nested)), "/metrics/o", code="too_many_keys")

    @pytest.mark.parametrize("key", ["1abc", "a b", "-a", ".a", "a/b", "é", "x" * 65, ""])
    def test_keys_outside_the_pattern_are_refused(self, api_client, device, key):
        pointer = "/metrics/" + key.replace("~", "~0").replace("/", "~1")
        assert_refused(post(api_client, reading(device, **{key: 1})), pointer, code="invalid_name")

    def test_a_bad_nested_key_is_refused(self, api_client, device):
        assert_refused(post(api_client, reading(device, o={"a b": 1})), "/metrics/o/a b", code="invalid_name")

    def test_null_is_refused(self, api_client, device):
        assert_refused(post(api_client, reading(device, t=None)), "/metrics/t", code="null")

    def test_an_array_is_refused(self, api_client, device):
        assert_refused(post(api_client, reading(device, t=[1, 2])), "/metrics/t", code="invalid")

    def test_nesting_4_deep_is_refused(self, api_client, device):
        metrics = {"a": {"b": {"c": {"d": {"e": 1}}}}}
        assert_refused(post(api_client, reading(device, **metrics)), "/metrics/a/b/c/d", code="max_depth")

    def test_a_string_of_257_characters_is_refused(self, api_client, device):
        assert_refused(post(api_client, reading(device, s="x" * 257)), "/metrics/s", code="max_length")

    def test_empty_metrics_are_refused(self, api_client, device):
        assert_refused(post(api_client, {**reading(device), "metrics": {}}), "/metrics", code="empty")

    @pytest.mark.parametrize("metrics", [[{"t": 1}], "t=1", 1, None], ids=repr)
    def test_metrics_that_are_not_an_object_are_refused(self, api_client, device, metrics):
        assert_refused(post(api_client, {**reading(device), "metrics": metrics}), "/metrics", code="invalid")

    def test_every_bad_metric_is_listed(self, api_client, device):
        metrics = {"ok": 1, "n": None, "s": "x" * 300, "o": {"arr": []}}
        assert_refused(post(api_client, reading(device, **metrics)), "/metrics/n", "/metrics/s", "/metrics/o/arr")


class TestShape:
    def test_missing_fields_are_refused(self, api_client):
        body = assert_refused(post(api_client, {}), "/device_id", "/timestamp", "/metrics", code="required")
        assert body["detail"] == "3 problems in the request; see errors."

    def test_an_unknown_field_is_refused(self, api_client, device):
        assert_refused(post(api_client, {**reading(device), "temp": 1}), "/temp", code="unknown_field")

    def test_a_reading_that_is_not_an_object_is_refused(self, api_client, device):
        assert_refused(post(api_client, [reading(device), 42, "x"]), "/1", "/2", code="invalid")

    @pytest.mark.parametrize("payload", ["reading", 42, True, None], ids=repr)
    def test_a_body_that_is_neither_a_reading_nor_an_array_is_refused(self, api_client, payload):
        assert_refused(post(api_client, payload), "", code="invalid")

    @pytest.mark.parametrize("device_id", ["not-a-uuid", 42, "6f1c2f7e3f8a4d7e9a432b1d0c9e8f10", None], ids=repr)
    def test_a_device_id_that_is_not_a_uuid_is_refused(self, api_client, device_id):
        payload = {"device_id": device_id, "timestamp": ago(minutes=1), "metrics": {"t": 1}}
        assert_refused(post(api_client, payload), "/device_id", code="invalid")

    def test_an_empty_batch_is_refused(self, api_client):
        assert_refused(post(api_client, []), "", code="batch_size")

    def test_1001_readings_are_refused(self, api_client, device):
        batch = [reading(device, timestamp) for timestamp in seconds_apart(1001)]
        assert_refused(post(api_client, batch), "", code="batch_size")


class TestDevices:
    def test_an_unknown_device_is_refused(self, api_client):
        payload = {"device_id": str(uuid.uuid4()), "timestamp": ago(minutes=1), "metrics": {"t": 1}}
        assert_refused(post(api_client, payload), "/device_id", code="unknown_device")

    @pytest.mark.parametrize("status", [DeviceStatus.INACTIVE, DeviceStatus.RETIRED])
    def test_an_inactive_or_retired_device_is_refused(self, api_client, status):
        body = assert_refused(
            post(api_client, reading(DeviceFactory(status=status))), "/device_id", code="device_not_ingesting"
        )
        assert status in body["errors"][0]["detail"]

    def test_each_reading_of_a_refused_device_is_pointed_at(self, api_client, device):
        retired = DeviceFactory(status=DeviceStatus.RETIRED)
        batch = [reading(device), reading(retired), reading(device, ago(minutes=2)), reading(retired, ago(minutes=2))]
        assert_refused(post(api_client, batch), "/1/device_id", "/3/device_id", code="device_not_ingesting")

    def test_a_deleted_device_is_refused_by_the_service_like_an_unknown_one(self, device):
        payload = [reading(DeviceFactory()), reading(device)]
        device.delete()
        with pytest.raises(InvalidReadings) as refused:
            reading_ingest(payload=payload)
        assert [(error["pointer"], error["code"]) for error in refused.value.errors] == [
            ("/1/device_id", "unknown_device")
        ]
        assert not Telemetry.objects.exists()


class TestTransport:
    def test_a_body_over_1_mib_is_a_413_problem(self, api_client, device):
        # Valid in every other way: 1,000 readings of ~1.3 kB each.
        strings = {f"s{index}": "x" * 250 for index in range(5)}
        batch = [reading(device, timestamp, **strings) for timestamp in seconds_apart(1000)]
        body = orjson.dumps(batch)
        assert len(body) > 1024 * 1024
        assert_problem(post_raw(api_client, body), 413, "payload_too_large")
        assert not Telemetry.objects.exists()

    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
    def test_a_body_that_is_not_json_is_a_415_problem(self, api_client, device, content_type):
        response = post_raw(api_client, orjson.dumps(reading(device)), content_type=content_type)
        assert_problem(response, 415, "unsupported_media_type")
        assert not Telemetry.objects.exists()

    def test_json_with_a_charset_is_accepted(self, api_client, device):
        response = post_raw(api_client, orjson.dumps(reading(device)), content_type="application/json; charset=utf-8")
        assert response.status_code == 201

    @pytest.mark.parametrize("body", ['{"device_id": ', "[1,]", "{'a': 1}", b"\xff\xfe"], ids=repr)
    def test_malformed_json_is_a_400_problem(self, api_client, body):
        assert_problem(post_raw(api_client, body), 400, "parse_error")

    def test_get_is_a_405_problem(self, api_client):
        assert_problem(api_client.get(URL), 405, "method_not_allowed")

    def test_any_accept_header_gets_json(self, api_client, device):
        response = post(api_client, reading(device), HTTP_ACCEPT="text/plain")
        assert response.status_code == 201
        assert response["Content-Type"] == "application/json"

    def test_the_endpoint_is_in_the_openapi_schema_with_an_optional_device_key(self, api_client):
        document = api_client.get("/api/v1/schema/", {"format": "json"}).json()
        operation = document["paths"][URL]["post"]
        assert operation["security"] == [{"deviceKey": []}, {}]  # a device key, or nothing
        assert document["components"]["securitySchemes"]["deviceKey"] == {
            "type": "http",
            "scheme": "Device",
            "description": "A device key (telemetry ingest only): `Authorization: Device <key>`.",
        }
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert [alternative["type"] for alternative in schema["oneOf"]] == ["object", "array"]
        assert set(operation["responses"]) >= {"201", "400", "401", "413", "415", "429"}


@pytest.mark.django_db(transaction=True)
def test_a_201_means_the_readings_are_committed(api_client):
    device = DeviceFactory()
    batch = [reading(device, ago(minutes=minutes), m=minutes) for minutes in (1, 2)]
    assert post(api_client, batch).status_code == 201
    # Another session sees the rows at once: they were committed before the response was sent.
    other = connect_separately()
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT metrics FROM telemetry WHERE device_id = %s ORDER BY time", [str(device.id)])
            assert [row[0] for row in cursor.fetchall()] == [{"m": 2}, {"m": 1}]
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_connection_broken_between_requests_is_replaced_and_the_readings_stored(api_client):
    """Ingest skips Django's per-request health check: a connection that broke while idle fails the INSERT, which is
    sent again on a new connection — the device gets its 201, not a 503."""
    device = DeviceFactory()
    assert post(api_client, reading(device, ago(minutes=2))).status_code == 201
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        broken_pid = cursor.fetchone()[0]
    other = connect_separately()
    try:
        other.autocommit = True
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [broken_pid])
            assert cursor.fetchone() == (True,)
            response = post(api_client, reading(device, ago(minutes=1)))
            assert response.status_code == 201, response.content
            assert response.json() == {"accepted": 1, "merged": 0, "duplicates": 0}
            cursor.execute("SELECT count(*) FROM telemetry WHERE device_id = %s", [str(device.id)])
            assert cursor.fetchone() == (2,)
    finally:
        other.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != broken_pid


@pytest.mark.django_db(transaction=True)
def test_ingest_sends_no_health_check_while_other_requests_do(api_client, monkeypatch):
    device = DeviceFactory()  # the connection is open: the next request would check it
    checks = []
    usable = connection.is_usable
    monkeypatch.setattr(connection, "is_usable", lambda: checks.append(1) or usable())

    def checks_during(request):
        close_old_connections()  # what request_started does in the app server (Django's test client skips it)
        checks.clear()
        request()
        return len(checks)

    assert checks_during(lambda: post(api_client, reading(device))) == 0
    assert checks_during(lambda: api_client.get("/api/v1/health/")) == 1


def wait_for_a_lock_wait(observer, statement):
    """True once a backend running ``statement`` waits for a lock (within 5 s)."""
    with observer.cursor() as cursor:
        for _ in range(500):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND strpos(query, %s) > 0",
                [statement],
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.01)
    return False


@pytest.mark.django_db(transaction=True)
def test_a_device_deleted_between_lookup_and_insert_is_a_400_not_a_500(api_client):
    device = DeviceFactory()
    deleter, observer = connect_separately(), connect_separately()
    observer.autocommit = True

    def ingest():
        try:
            return post(api_client, reading(device))
        finally:
            connection.close()  # this thread's own Django connection

    # The delete holds the device row until it commits: the request's lookup still sees the device, its INSERT's
    # foreign key check waits for the row and fails once the delete commits.
    with deleter.cursor() as cursor:
        cursor.execute("DELETE FROM devices WHERE id = %s", [str(device.id)])
    with ThreadPoolExecutor(max_workers=1) as pool:
        request = pool.submit(ingest)
        try:
            insert_waited = wait_for_a_lock_wait(observer, "EXECUTE telemetry_insert_readings")
        finally:
            deleter.commit()  # whatever happened, never leave the request blocked
            deleter.close()
            observer.close()
        response = request.result(timeout=30)
    assert insert_waited
    body = assert_refused(response, "/device_id", code="unknown_device")
    assert body["errors"][0]["detail"] == "No device has this id."


class TestFastPath:
    """POSTs are served by telemetry.ingest.middleware.IngestFastPathMiddleware, ahead of DRF and most middleware."""

    @pytest.mark.django_db(transaction=True)
    def test_a_valid_request_costs_one_statement(self, api_client, device):
        def statements_of(batch):
            with CaptureQueriesContext(connection) as queries:
                response = post(api_client, batch)
            assert response.status_code == 201, response.content
            return [query["sql"].lstrip() for query in queries]

        # A connection's first ingest prepares the INSERT (which also checks the devices), the others execute it.
        # This connection served other tests: the request gets a new one.
        connection.close()
        first = statements_of([reading(device), reading(DeviceFactory())])
        assert [sql.split("(")[0] for sql in first] == [
            "PREPARE telemetry_merge_readings ",
            "EXECUTE telemetry_merge_readings ",
        ]
        assert "INSERT INTO telemetry" in first[0]
        later = statements_of([reading(device, ago(minutes=3)), reading(DeviceFactory())])
        assert [sql.split("(")[0] for sql in later] == ["EXECUTE telemetry_merge_readings "]
        # A single reading, new: the INSERT that fires no UPDATE trigger, alone.
        single = statements_of(reading(device, ago(minutes=4)))
        assert [sql.split("(")[0] for sql in single if not sql.startswith("PREPARE ")] == [
            "EXECUTE telemetry_insert_readings "
        ]

    def test_a_refused_device_is_found_by_the_insert_then_named_by_one_lookup(self, api_client):
        retired = DeviceFactory(status=DeviceStatus.RETIRED)
        with CaptureQueriesContext(connection) as queries:
            response = post(api_client, [reading(retired), reading(retired, ago(minutes=2))])
        # No lookup ahead of the INSERT: the statement refuses the readings itself. (The savepoint around it exists
        # only in the test's transaction; whether this connection still had to prepare it depends on earlier tests.)
        statements = [query["sql"].lstrip() for query in queries if "SAVEPOINT" not in query["sql"]]
        assert [" ".join(sql.split("(")[0].split()) for sql in statements if not sql.startswith("PREPARE ")] == [
            "EXECUTE telemetry_merge_readings",
            # (up to its first parenthesis)
            "SELECT d.id::text, d.status, k.id, k.key_hash, CASE WHEN t.strict_metrics THEN t.name END, CASE WHEN "
            "t.strict_metrics THEN ARRAY",
        ]
        body = assert_refused(response, "/0/device_id", "/1/device_id", code="device_not_ingesting")
        assert "retired" in body["errors"][0]["detail"]

    def test_the_statement_is_prepared_once_in_each_session(self):
        """What the benchmark's direct baseline relies on: psycopg2 connections of its own, each prepared once."""
        sessions = [connect_separately(), connect_separately()]
        try:
            for session in sessions:
                session.autocommit = True
                with session.cursor() as cursor:
                    # Twice: a second PREPARE of the same name would fail.
                    assert [INSERT_READINGS.execute(cursor, insert_readings_parameters("[]")) for _ in range(2)] == [
                        0,
                        0,
                    ]
                    count = "SELECT count(*) FROM pg_prepared_statements WHERE name = %s"
                    cursor.execute(count, [INSERT_READINGS.name])
                    assert cursor.fetchone() == (1,)
                    # Forgotten: gone from the session, and prepared again by the next run.
                    INSERT_READINGS.forget(cursor)
                    cursor.execute(count, [INSERT_READINGS.name])
                    assert cursor.fetchone() == (0,)
                    assert INSERT_READINGS.execute(cursor, insert_readings_parameters("[]")) == 0
                    cursor.execute(count, [INSERT_READINGS.name])
                    assert cursor.fetchone() == (1,)
        finally:
            for session in sessions:
                session.close()

    def test_responses_keep_the_security_headers_and_a_content_length(self, api_client, device):
        for response in (post(api_client, reading(device)), post_raw(api_client, b"[")):
            assert response["X-Frame-Options"] == "DENY"
            assert response["X-Content-Type-Options"] == "nosniff"
            assert response["Referrer-Policy"] == "same-origin"
            assert int(response["Content-Length"]) == len(response.content)

    def test_a_host_not_allowed_is_refused(self, api_client, device):
        response = post(api_client, reading(device), HTTP_HOST="evil.example.com")
        assert_problem(response, 400, "bad_request")
        assert not Telemetry.objects.exists()

    def test_a_lost_database_is_a_503_problem(self, api_client, device, monkeypatch):
        from django.db import OperationalError

        import telemetry.ingest.views

        def unavailable(**kwargs):
            raise OperationalError("connection refused")

        monkeypatch.setattr(telemetry.ingest.views, "reading_ingest", unavailable)
        body = assert_problem(post(api_client, reading(device)), 503, "database_unavailable")
        assert body["detail"] == "The database is unavailable."

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            (None, "application/json"),  # a valid reading
            (b"[", "application/json"),
            (b"{}", "application/json"),
            (b"", "application/json"),
            (b"", "text/plain"),
            (b'{"a": 1}', "text/plain"),
            (b'{"a": 1}', "application/json; charset=utf-8"),
            (b"[]", "application/*"),
            (b"x" * (1024 * 1024 + 1), "application/json"),
        ],
        ids=["201", "parse_error", "invalid", "empty", "empty_text", "415", "charset", "wildcard", "413"],
    )
    def test_the_drf_view_answers_exactly_like_the_fast_path(self, api_client, settings, body, content_type):
        device = DeviceFactory()
        time_ = ago(minutes=1)

        def answer():
            payload = body if body is not None else orjson.dumps(reading(device, time_))
            response = post_raw(api_client, payload, content_type=content_type)
            Telemetry.objects.all().delete()
            return response.status_code, response["Content-Type"], response.content

        fast = answer()
        settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if not name.endswith("IngestFastPathMiddleware")]
        api_client.handler.load_middleware()
        assert answer() == fast
