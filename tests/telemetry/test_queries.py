"""Raw and latest telemetry through the API: ranges, cursor pagination, the metrics filter, parameters, roles."""

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from tests.conftest import assert_problem
from tests.factories import DeviceFactory, insert_readings

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def telemetry_url(device_id, suffix=""):
    return f"/api/v1/devices/{device_id}/telemetry/{suffix}"


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def timestamps(response):
    assert response.status_code == 200, response.content
    return [item["timestamp"] for item in response.json()["results"]]


@pytest.fixture
def device():
    return DeviceFactory()


def test_readings_in_range_start_inclusive_end_exclusive(viewer_client, device):
    end = T0 + timedelta(hours=1)
    insert_readings(device, [(t, {"temp": 1}) for t in (T0 - US, T0, T0 + timedelta(minutes=1), end - US, end)])
    insert_readings(DeviceFactory(), [(T0 + timedelta(minutes=2), {"temp": 1})])  # another device's

    response = viewer_client.get(telemetry_url(device.id), {"start": iso(T0), "end": iso(end)})

    assert timestamps(response) == [iso(end - US), "2026-11-01T12:01:00Z", "2026-11-01T12:00:00Z"]
    assert response.json()["results"][0].keys() == {"timestamp", "metrics", "received_at"}
    assert response.json()["results"][0]["received_at"].endswith("Z")


def test_order_asc_is_oldest_first(viewer_client, device):
    insert_readings(device, [(T0 + timedelta(seconds=s), {"temp": s}) for s in (3, 1, 2)])
    params = {"start": iso(T0), "end": iso(T0 + timedelta(minutes=1)), "order": "asc"}

    results = viewer_client.get(telemetry_url(device.id), params).json()["results"]

    assert [item["metrics"]["temp"] for item in results] == [1, 2, 3]


def test_default_range_is_the_last_24_hours(viewer_client, device):
    now = timezone.now()
    insert_readings(device, [(now - timedelta(hours=h), {"temp": h}) for h in (25, 23, 1)])

    results = viewer_client.get(telemetry_url(device.id)).json()["results"]

    assert [item["metrics"]["temp"] for item in results] == [1, 23]


def test_offsets_other_than_utc_are_refused_and_plus_zero_is_accepted(viewer_client, device):
    insert_readings(device, [(T0, {"temp": 1})])
    params = {"start": "2026-11-01T12:00:00+00:00", "end": "2026-11-01T13:00:00.000000Z"}
    assert len(viewer_client.get(telemetry_url(device.id), params).json()["results"]) == 1

    response = viewer_client.get(telemetry_url(device.id), {"start": "2026-11-01T14:00:00+02:00"})
    assert assert_problem(response, 400)["errors"][0]["parameter"] == "start"


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_cursor_pagination_walks_every_row_exactly_once_both_ways(viewer_client, device, order):
    times = [T0 + timedelta(seconds=7 * i, microseconds=i) for i in range(11)]
    insert_readings(device, [(t, {"i": i}) for i, t in enumerate(times)])
    expected = [iso(t) for t in (times if order == "asc" else reversed(times))]

    url = telemetry_url(device.id)
    params = {"start": iso(T0), "end": iso(T0 + timedelta(hours=1)), "order": order, "page_size": 3}
    pages = [viewer_client.get(url, params).json()]
    assert pages[0]["previous"] is None
    while pages[-1]["next"]:
        pages.append(viewer_client.get(pages[-1]["next"]).json())
    assert [len(page["results"]) for page in pages] == [3, 3, 3, 2]
    assert [item["timestamp"] for page in pages for item in page["results"]] == expected

    backwards = [pages[-1]]
    while backwards[-1]["previous"]:
        backwards.append(viewer_client.get(backwards[-1]["previous"]).json())
    walked_back = [item["timestamp"] for page in reversed(backwards) for item in page["results"]]
    assert walked_back == expected


def test_cursors_are_opaque(viewer_client, device):
    insert_readings(device, [(T0 + timedelta(seconds=s), {"temp": s}) for s in range(3)])
    params = {"start": iso(T0), "end": iso(T0 + timedelta(minutes=1)), "page_size": 1}

    next_url = viewer_client.get(telemetry_url(device.id), params).json()["next"]

    (cursor,) = parse_qs(urlsplit(next_url).query)["cursor"]
    assert "2026" not in cursor


def test_page_size_defaults_to_50_and_is_clamped_to_500(viewer_client, device):
    insert_readings(device, [(T0 + timedelta(seconds=s), {"temp": s}) for s in range(501)])
    params = {"start": iso(T0), "end": iso(T0 + timedelta(hours=1))}

    assert len(viewer_client.get(telemetry_url(device.id), params).json()["results"]) == 50
    clamped = viewer_client.get(telemetry_url(device.id), {**params, "page_size": 100000}).json()
    assert len(clamped["results"]) == 500
    assert clamped["next"] is not None


def test_metrics_narrows_keys_and_skips_readings_without_them(viewer_client, device):
    insert_readings(
        device,
        [
            (T0, {"temp": 1, "hum": 50, "status": "ok"}),
            (T0 + timedelta(seconds=1), {"status": "ok"}),  # none of the requested metrics: skipped
            (T0 + timedelta(seconds=2), {"hum": 51, "a.b": 7, "a": {"b": 8}}),
        ],
    )
    params = {"start": iso(T0), "end": iso(T0 + timedelta(minutes=1)), "metrics": "temp,a.b", "order": "asc"}

    results = viewer_client.get(telemetry_url(device.id), params).json()["results"]

    assert [item["metrics"] for item in results] == [{"temp": 1}, {"a.b": 7}]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-11-01T12:00:00"}, "start"),  # naive
        ({"end": "2026-11-01 12:00:00Z"}, "end"),
        ({"end": "2026-02-30T12:00:00Z"}, "end"),
        ({"end": "2026-11-01T12:00:00.1234567Z"}, "end"),
        ({"start": "2026-11-01T12:00:00Z", "end": "2026-11-01T12:00:00Z"}, "end"),
        ({"start": "2026-11-01T13:00:00Z", "end": "2026-11-01T12:00:00Z"}, "end"),
        ({"order": "sideways"}, "order"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "cD1nYXJiYWdl"}, "cursor"),  # base64 of p=garbage: a forged position
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"metrics": "temp,"}, "metrics"),
        ({"metrics": "temp;drop"}, "metrics"),
    ],
)
def test_bad_parameters_are_problems_naming_the_parameter(viewer_client, device, params, parameter):
    body = assert_problem(viewer_client.get(telemetry_url(device.id), params), 400, "invalid_parameter")
    assert [error["parameter"] for error in body["errors"]] == [parameter]


def _query_of(suffix):
    """Valid query parameters of each endpoint (latest/ takes none)."""
    window = {"start": iso(T0), "end": iso(T0 + timedelta(hours=1))}
    return {"": window, "latest/": {}, "aggregate/": {**window, "interval": "1h"}}[suffix]


@pytest.mark.parametrize("suffix", ["", "latest/", "aggregate/"])
def test_unknown_device_is_a_404_problem(viewer_client, suffix):
    assert_problem(viewer_client.get(telemetry_url(uuid.uuid4(), suffix), _query_of(suffix)), 404)


@pytest.mark.parametrize(
    ("role_client", "status"),
    [("admin", 200), ("operator", 200), ("viewer", 200), ("anonymous", 401)],
    indirect=["role_client"],
)
@pytest.mark.parametrize("suffix", ["", "latest/", "aggregate/"])
def test_every_role_reads_and_anonymous_is_refused(role_client, status, device, suffix):
    response = role_client.get(telemetry_url(device.id, suffix), _query_of(suffix))
    if status == 401:
        assert_problem(response, 401)
    else:
        assert response.status_code == 200, response.content


def test_reads_are_get_only(admin_client, device):
    assert_problem(admin_client.post(telemetry_url(device.id), {}, format="json"), 405)


# Latest


def test_latest_gives_the_newest_reading_and_each_metrics_newest_value_of_the_last_24_hours(viewer_client, device):
    now = timezone.now()
    insert_readings(
        device,
        [
            (now - timedelta(hours=30), {"temp": 1.0, "only_old": 5}),  # older than 24 h: only_old is left out
            (now - timedelta(hours=10), {"temp": 2.0, "hum": 50, "status": "ok", "a.b": True}),
            (now - timedelta(hours=1), {"temp": 3.5}),
        ],
    )
    insert_readings(DeviceFactory(), [(now, {"temp": 99, "other": 1})])

    body = viewer_client.get(telemetry_url(device.id, "latest/")).json()

    assert body["reading"]["metrics"] == {"temp": 3.5}
    assert body["reading"]["timestamp"] == iso(now - timedelta(hours=1))
    assert body["metrics"] == {
        "a.b": {"value": True, "timestamp": iso(now - timedelta(hours=10))},
        "hum": {"value": 50, "timestamp": iso(now - timedelta(hours=10))},
        "status": {"value": "ok", "timestamp": iso(now - timedelta(hours=10))},
        "temp": {"value": 3.5, "timestamp": iso(now - timedelta(hours=1))},
    }


def test_latest_reading_may_be_older_than_24_hours(viewer_client, device):
    old = timezone.now() - timedelta(days=3)
    insert_readings(device, [(old, {"temp": 1})])

    body = viewer_client.get(telemetry_url(device.id, "latest/")).json()

    assert body == {
        "reading": {"timestamp": iso(old), "metrics": {"temp": 1}, "received_at": body["reading"]["received_at"]},
        "metrics": {},
    }


def test_latest_of_a_device_without_readings(viewer_client, device):
    assert viewer_client.get(telemetry_url(device.id, "latest/")).json() == {"reading": None, "metrics": {}}
