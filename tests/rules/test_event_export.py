"""Events as CSV: the list's filters and ordering, every role that reads events, no pagination; the same export as
Admin actions, with the devices' readings and aggregates (both editions)."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from iothub.models import Role
from rules.models import Event, EventStatus
from tests.conftest import assert_problem
from tests.factories import PASSWORD, DeviceFactory, RuleFactory, UserFactory, insert_readings

pytestmark = pytest.mark.django_db

EVENTS_URL = "/api/v1/events/"


def rows_of(response):
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def events(db):
    """Six devices breaching one rule once each: six open events, two of them then acknowledged."""
    rule = RuleFactory(name="too hot", metric="temperature", operator="gt", threshold=30, severity="critical")
    now = datetime.now(UTC).replace(microsecond=0)
    for n in range(6):
        insert_readings(DeviceFactory(name=f"boiler {n}"), [(now - timedelta(minutes=n), {"temperature": 31.5 + n})])
    operator = UserFactory(role=Role.OPERATOR, username="olivia")
    acknowledged = Event.objects.order_by("triggered_at")[:2]
    Event.objects.filter(pk__in=[event.pk for event in acknowledged]).update(
        status=EventStatus.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=operator, acknowledged_note="on it"
    )
    return rule


@pytest.mark.parametrize("role_client", ["viewer", "operator", "admin"], indirect=True)
def test_every_role_that_reads_events_exports_them(role_client, events):
    rows = rows_of(role_client.get(EVENTS_URL, {"format": "csv"}))
    assert len(rows) == 6
    assert [row["triggered_at"] for row in rows] == sorted((row["triggered_at"] for row in rows), reverse=True)
    first = rows[0]
    assert first["rule_name"] == "too hot"
    assert first["device_name"] == "boiler 0"
    assert (first["metric"], first["operator"], first["threshold"], first["value"]) == (
        "temperature",
        "gt",
        "30",
        "31.5",
    )
    assert first["triggered_at"].endswith("Z")
    assert first["status"] == "open"


def test_the_list_filters_and_ordering_apply(viewer_client, events):
    rows = rows_of(
        viewer_client.get(EVENTS_URL, {"format": "csv", "status": "acknowledged", "ordering": "triggered_at"})
    )
    assert [row["status"] for row in rows] == ["acknowledged", "acknowledged"]
    assert rows[0]["triggered_at"] < rows[1]["triggered_at"]
    assert (rows[0]["acknowledged_by"], rows[0]["acknowledged_note"]) == ("olivia", "on it")
    assert rows[0]["resolved_at"] == ""


def test_the_export_is_refused_where_the_list_is(api_client, viewer_client, events):
    assert_problem(api_client.get(EVENTS_URL, {"format": "csv"}), 401)
    event = Event.objects.first()
    body = assert_problem(viewer_client.get(f"{EVENTS_URL}{event.pk}/", {"format": "csv"}), 400)
    assert body["errors"][0]["parameter"] == "format"  # one event is JSON only
    body = assert_problem(viewer_client.get(EVENTS_URL, {"format": "csv", "page": "2"}), 400)
    assert body["errors"][0]["parameter"] == "page"


# Admin: the same exports as actions of the changelists.


@pytest.fixture
def admin_site_viewer(client):
    UserFactory(username="vera", role=Role.VIEWER)
    assert client.login(username="vera", password=PASSWORD)
    return client


def _action(client, url, action, pks):
    return client.post(url, {"action": action, "_selected_action": [str(pk) for pk in pks]}, secure=True)


def test_a_viewer_exports_selected_events_from_admin(admin_site_viewer, events):
    chosen = list(Event.objects.filter(status=EventStatus.OPEN).values_list("pk", flat=True))
    rows = rows_of(_action(admin_site_viewer, "/admin/rules/event/", "export_events_csv", chosen))
    assert sorted(int(row["id"]) for row in rows) == sorted(chosen)


def test_a_device_exports_its_readings_and_hourly_aggregates_from_admin(admin_site_viewer):
    device = DeviceFactory()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    insert_readings(device, [(hour + timedelta(minutes=10 * n), {"t": n, "on": n % 2 == 0}) for n in range(12)])

    readings = rows_of(_action(admin_site_viewer, "/admin/telemetry/device/", "export_readings_csv", [device.pk]))
    assert len(readings) == 12
    assert list(readings[0]) == ["timestamp", "on", "t"]
    assert readings[0]["on"] == "true"

    hourly = rows_of(
        _action(admin_site_viewer, "/admin/telemetry/device/", "export_hourly_aggregates_csv", [device.pk])
    )
    assert [(row["bucket"], row["t:count"]) for row in hourly] == [
        (hour.isoformat().replace("+00:00", "Z"), "6"),
        ((hour + timedelta(hours=1)).isoformat().replace("+00:00", "Z"), "6"),
    ]


def test_exporting_several_devices_at_once_asks_for_one(admin_site_viewer):
    devices = [DeviceFactory(), DeviceFactory()]
    response = _action(admin_site_viewer, "/admin/telemetry/device/", "export_readings_csv", [d.pk for d in devices])
    assert response.status_code == 302
    response = admin_site_viewer.get(response["Location"], secure=True)
    assert "Select exactly one device to export." in response.content.decode()
