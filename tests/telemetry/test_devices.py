"""The device registry API: device types and devices, per role, with filters and last_seen_at."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction

from telemetry.models import Device, DeviceStatus, DeviceType, Telemetry
from tests.conftest import assert_problem
from tests.factories import DeviceFactory, DeviceTypeFactory

pytestmark = pytest.mark.django_db

TYPES_URL = "/api/v1/device-types/"
DEVICES_URL = "/api/v1/devices/"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NEW_TYPE = {
    "name": "thermometer",
    "description": "Indoor climate sensor",
    "metrics": [{"name": "temperature", "unit": "°C"}, {"name": "humidity", "unit": "%", "description": "relative"}],
}


def new_device(device_type, **changes):
    return {
        "name": "Boiler room",
        "serial_number": "TH-0001",
        "location": "Building A",
        "status": "active",
        "device_type": device_type.pk,
        "metadata": {"firmware": "1.4.2"},
        **changes,
    }


def add_readings(device, *times):
    Telemetry.objects.bulk_create(Telemetry(device=device, time=time, metrics={"t": 1}) for time in times)


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def names(response):
    assert response.status_code == 200, response.content
    return [item["name"] for item in response.json()["results"]]


# Device types


def test_admin_manages_device_types(admin_client):
    created = admin_client.post(TYPES_URL, NEW_TYPE)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["metrics"] == NEW_TYPE["metrics"]
    url = f"{TYPES_URL}{body['id']}/"
    assert DeviceType.objects.get(pk=body["id"]).metrics == NEW_TYPE["metrics"]

    changed = admin_client.patch(url, {"description": "Outdoor", "metrics": []})
    assert changed.status_code == 200, changed.content
    assert changed.json()["metrics"] == []
    assert DeviceType.objects.get(pk=body["id"]).description == "Outdoor"

    assert admin_client.delete(url).status_code == 204
    assert not DeviceType.objects.filter(pk=body["id"]).exists()


@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_a_declared_metric_without_a_name_is_a_problem_in_every_write(admin_client, method):
    # A PATCH used to skip the nested required field and answer 500 (KeyError 'name').
    device_type = DeviceTypeFactory(name="meter", metrics=[{"name": "kwh"}])
    url = TYPES_URL if method == "post" else f"{TYPES_URL}{device_type.pk}/"
    body = assert_problem(getattr(admin_client, method)(url, {"name": "x", "metrics": [{"unit": "C"}]}), 400)
    assert {"pointer": "/metrics/0/name", "code": "required"}.items() <= body["errors"][0].items(), body
    assert list(DeviceType.objects.values_list("name", "metrics")) == [("meter", [{"name": "kwh"}])]


def test_a_device_type_states_how_often_its_devices_send(admin_client):
    created = admin_client.post(TYPES_URL, {"name": "relay", "expected_interval_seconds": 300})
    assert created.status_code == 201, created.content
    assert created.json()["expected_interval_seconds"] == 300
    url = f"{TYPES_URL}{created.json()['id']}/"
    assert admin_client.patch(url, {"expected_interval_seconds": None}).json()["expected_interval_seconds"] is None
    assert admin_client.post(TYPES_URL, {"name": "plain"}).json()["expected_interval_seconds"] is None


def test_the_database_refuses_a_non_positive_expected_interval():
    device_type = DeviceTypeFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        DeviceType.objects.filter(pk=device_type.pk).update(expected_interval_seconds=0)


def test_declared_metrics_are_optional(admin_client):
    created = admin_client.post(TYPES_URL, {"name": "relay"})
    assert created.status_code == 201, created.content
    assert created.json()["metrics"] == []


@pytest.mark.parametrize("role_client", ["admin", "operator", "viewer"], indirect=True)
def test_every_role_reads_device_types(role_client):
    device_type = DeviceTypeFactory(name="meter", metrics=[{"name": "kwh", "unit": "kWh"}])
    assert names(role_client.get(TYPES_URL)) == ["meter"]
    detail = role_client.get(f"{TYPES_URL}{device_type.pk}/")
    assert detail.json()["metrics"] == [{"name": "kwh", "unit": "kWh"}]


@pytest.mark.parametrize("role_client", ["operator", "viewer"], indirect=True)
def test_only_admins_write_device_types(role_client):
    device_type = DeviceTypeFactory(name="meter")
    assert_problem(role_client.post(TYPES_URL, NEW_TYPE), 403, "permission_denied")
    assert_problem(role_client.patch(f"{TYPES_URL}{device_type.pk}/", {"name": "x"}), 403, "permission_denied")
    assert_problem(role_client.delete(f"{TYPES_URL}{device_type.pk}/"), 403, "permission_denied")
    assert list(DeviceType.objects.values_list("name", flat=True)) == ["meter"]


def test_anonymous_callers_are_refused(api_client):
    device = DeviceFactory()
    assert_problem(api_client.get(TYPES_URL), 401, "not_authenticated")
    assert_problem(api_client.post(TYPES_URL, NEW_TYPE), 401, "not_authenticated")
    assert_problem(api_client.get(DEVICES_URL), 401, "not_authenticated")
    assert_problem(api_client.get(f"{DEVICES_URL}{device.pk}/"), 401, "not_authenticated")
    assert_problem(api_client.post(DEVICES_URL, new_device(device.device_type)), 401, "not_authenticated")
    assert_problem(api_client.delete(f"{DEVICES_URL}{device.pk}/"), 401, "not_authenticated")
    assert Device.objects.filter(pk=device.pk).exists()


@pytest.mark.parametrize(
    ("change", "pointer", "code"),
    [
        ({"name": "taken"}, "/name", "unique"),
        ({"name": ""}, "/name", "blank"),
        ({"metrics": {"temperature": "°C"}}, "/metrics", "not_a_list"),
        ({"metrics": [{"name": "1st"}]}, "/metrics/0/name", "invalid"),
        ({"metrics": [{"name": "ok"}, {"name": "temp\n"}]}, "/metrics/1/name", "invalid"),
        ({"metrics": [{"name": "x" * 65}]}, "/metrics/0/name", "invalid"),
        ({"metrics": [{"unit": "V"}]}, "/metrics/0/name", "required"),
        ({"metrics": [{"name": "volt", "colour": "red"}]}, "/metrics/0/colour", "unknown_field"),
        ({"metrics": [{"name": "volt", "unit": "V" * 33}]}, "/metrics/0/unit", "invalid"),
        ({"metrics": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}, "/metrics/2/name", "invalid"),
        ({"metrics": ["volt"]}, "/metrics/0", "invalid"),
        ({"colour": "red"}, "/colour", "unknown_field"),
        ({"expected_interval_seconds": 0}, "/expected_interval_seconds", "invalid"),
        ({"expected_interval_seconds": "often"}, "/expected_interval_seconds", "invalid"),
        ({"expected_interval_seconds": 2**31}, "/expected_interval_seconds", "invalid"),  # beyond the integer column
    ],
)
def test_invalid_device_type_writes_are_problems_and_change_nothing(admin_client, change, pointer, code):
    DeviceTypeFactory(name="taken")
    body = assert_problem(admin_client.post(TYPES_URL, {**NEW_TYPE, **change}), 400, "invalid")
    assert any(error["pointer"] == pointer for error in body["errors"]), body
    assert list(DeviceType.objects.values_list("name", flat=True)) == ["taken"]


def test_invalid_device_type_update_changes_nothing(admin_client):
    device_type = DeviceTypeFactory(name="meter", metrics=[{"name": "kwh"}])
    body = assert_problem(
        admin_client.patch(f"{TYPES_URL}{device_type.pk}/", {"metrics": [{"name": "v"}, {"name": "v"}]}), 400
    )
    assert [error["pointer"] for error in body["errors"]] == ["/metrics/1/name"]
    assert DeviceType.objects.get(pk=device_type.pk).metrics == [{"name": "kwh"}]


def test_a_device_type_in_use_cannot_be_deleted(admin_client):
    device = DeviceFactory()
    body = assert_problem(admin_client.delete(f"{TYPES_URL}{device.device_type_id}/"), 409, "protected")
    assert "devices" in body["detail"]
    assert DeviceType.objects.filter(pk=device.device_type_id).exists()
    assert Device.objects.filter(pk=device.pk).exists()


# Devices


@pytest.mark.parametrize("role_client", ["admin", "operator"], indirect=True)
def test_admins_and_operators_manage_devices(role_client):
    device_type = DeviceTypeFactory()
    created = role_client.post(DEVICES_URL, new_device(device_type))
    assert created.status_code == 201, created.content
    body = created.json()
    device = Device.objects.get(serial_number="TH-0001")
    assert body["id"] == str(device.pk)
    assert body["last_seen_at"] is None
    assert body["metadata"] == {"firmware": "1.4.2"}
    assert body["device_type"] == device_type.pk
    url = f"{DEVICES_URL}{body['id']}/"

    assert role_client.get(url).json() == body

    changed = role_client.patch(url, {"status": "maintenance", "metadata": {"firmware": "1.5.0"}})
    assert changed.status_code == 200, changed.content
    device.refresh_from_db()
    assert (device.status, device.metadata) == ("maintenance", {"firmware": "1.5.0"})

    assert role_client.delete(url).status_code == 204
    assert not Device.objects.filter(pk=device.pk).exists()


def test_the_device_id_is_generated_by_the_database(admin_client):
    chosen = str(uuid.uuid4())
    body = admin_client.post(DEVICES_URL, new_device(DeviceTypeFactory(), id=chosen)).json()
    generated = uuid.UUID(body["id"])
    assert generated.version == 4
    assert str(generated) != chosen  # read-only: a client can't choose it
    assert Device.objects.filter(pk=generated).exists()
    assert body["created_at"] is not None


def test_viewers_read_devices_but_cannot_write(viewer_client):
    device = DeviceFactory(name="pump")
    url = f"{DEVICES_URL}{device.pk}/"
    assert names(viewer_client.get(DEVICES_URL)) == ["pump"]
    assert viewer_client.get(url).json()["serial_number"] == device.serial_number
    assert_problem(viewer_client.post(DEVICES_URL, new_device(device.device_type)), 403, "permission_denied")
    assert_problem(viewer_client.patch(url, {"status": "retired"}), 403, "permission_denied")
    assert_problem(viewer_client.delete(url), 403, "permission_denied")
    assert Device.objects.get().status == DeviceStatus.ACTIVE


@pytest.mark.parametrize("path", [f"{uuid.uuid4()}/", "not-a-uuid/", "12/"])
def test_unknown_devices_are_404_problems(operator_client, path):
    assert_problem(operator_client.get(f"{DEVICES_URL}{path}"), 404, "not_found")
    assert_problem(operator_client.delete(f"{DEVICES_URL}{path}"), 404, "not_found")


@pytest.mark.parametrize(
    ("change", "pointer", "code"),
    [
        ({"status": "broken"}, "/status", "invalid_choice"),
        ({"metadata": ["a", "b"]}, "/metadata", "not_an_object"),
        ({"metadata": "firmware 1.4"}, "/metadata", "not_an_object"),
        ({"metadata": None}, "/metadata", "null"),
        ({"colour": "red"}, "/colour", "unknown_field"),
        ({"device_type": 999999}, "/device_type", "does_not_exist"),
        ({"device_type": "thermometer"}, "/device_type", "incorrect_type"),
        ({"serial_number": "SN-TAKEN"}, "/serial_number", "unique"),
        ({"name": ""}, "/name", "blank"),
    ],
)
def test_invalid_device_writes_are_problems_and_change_nothing(operator_client, change, pointer, code):
    existing = DeviceFactory(serial_number="SN-TAKEN")
    payload = {**new_device(existing.device_type), **change}
    body = assert_problem(operator_client.post(DEVICES_URL, payload), 400, "invalid")
    assert any(error["pointer"] == pointer and error["code"] == code for error in body["errors"]), body
    assert list(Device.objects.values_list("pk", flat=True)) == [existing.pk]

    other = DeviceFactory(status=DeviceStatus.INACTIVE)
    before = Device.objects.values().get(pk=other.pk)
    body = assert_problem(operator_client.patch(f"{DEVICES_URL}{other.pk}/", change), 400, "invalid")
    assert any(error["pointer"] == pointer for error in body["errors"]), body
    assert Device.objects.values().get(pk=other.pk) == before


def test_a_device_without_name_or_serial_is_refused(operator_client):
    body = assert_problem(operator_client.post(DEVICES_URL, {"device_type": DeviceTypeFactory().pk}), 400)
    assert {error["pointer"] for error in body["errors"]} == {"/name", "/serial_number"}
    assert not Device.objects.exists()


def test_deleting_a_device_deletes_its_telemetry(admin_client):
    doomed, kept = DeviceFactory(), DeviceFactory()
    # Three days: the readings span several chunks.
    add_readings(doomed, *(T0 + timedelta(days=day) for day in range(3)))
    add_readings(kept, T0)
    assert admin_client.delete(f"{DEVICES_URL}{doomed.pk}/").status_code == 204
    assert not Telemetry.objects.filter(device_id=doomed.pk).exists()
    assert Telemetry.objects.filter(device_id=kept.pk).count() == 1


def test_last_seen_at_is_the_time_of_the_newest_reading(viewer_client):
    seen = DeviceFactory(name="seen")
    DeviceFactory(name="silent")
    newest = T0 + timedelta(days=2, seconds=1.5)
    add_readings(seen, T0, newest, T0 + timedelta(days=1))  # inserted out of order, in three chunks
    listing = viewer_client.get(DEVICES_URL).json()["results"]
    assert {item["name"]: item["last_seen_at"] for item in listing} == {"seen": iso(newest), "silent": None}
    assert viewer_client.get(f"{DEVICES_URL}{seen.pk}/").json()["last_seen_at"] == iso(newest)

    # Derived at read time: a new reading shows at once, with nothing written to the device row.
    updated_at = Device.objects.get(pk=seen.pk).updated_at
    add_readings(seen, newest + timedelta(minutes=1))
    body = viewer_client.get(f"{DEVICES_URL}{seen.pk}/").json()
    assert body["last_seen_at"] == iso(newest + timedelta(minutes=1))
    assert Device.objects.get(pk=seen.pk).updated_at == updated_at


def test_an_update_answers_with_last_seen_at(operator_client):
    device = DeviceFactory()
    add_readings(device, T0)
    body = operator_client.patch(f"{DEVICES_URL}{device.pk}/", {"location": "roof"}).json()
    assert (body["location"], body["last_seen_at"]) == ("roof", iso(T0))


def test_the_device_list_makes_a_fixed_number_of_queries(viewer_client, django_assert_num_queries):
    for index in range(8):
        device = DeviceFactory()
        add_readings(device, *(T0 + timedelta(hours=hour + index) for hour in range(3)))
    # The caller's user row, the count, the page (with last_seen_at in it) — however many devices.
    with django_assert_num_queries(3):
        results = viewer_client.get(DEVICES_URL).json()["results"]
    assert len(results) == 8
    assert all(item["last_seen_at"] for item in results)


def test_devices_filter_by_status_and_device_type(viewer_client):
    sensor, meter = DeviceTypeFactory(name="sensor"), DeviceTypeFactory(name="meter")
    DeviceFactory(name="a", status=DeviceStatus.ACTIVE, device_type=sensor)
    DeviceFactory(name="b", status=DeviceStatus.MAINTENANCE, device_type=meter)
    DeviceFactory(name="c", status=DeviceStatus.RETIRED, device_type=sensor)
    assert names(viewer_client.get(DEVICES_URL, {"status": "retired"})) == ["c"]
    assert names(viewer_client.get(DEVICES_URL, {"status": ["active", "maintenance"]})) == ["a", "b"]
    assert names(viewer_client.get(DEVICES_URL, {"device_type": sensor.pk})) == ["a", "c"]
    assert names(viewer_client.get(DEVICES_URL, {"device_type": sensor.pk, "status": "active"})) == ["a"]


def test_devices_are_searched_by_name_and_serial_number(viewer_client):
    DeviceFactory(name="Boiler room", serial_number="TH-0001")
    DeviceFactory(name="Roof", serial_number="WX-0002")
    DeviceFactory(name="Cellar", serial_number="TH-0003", location="boiler annex")
    assert names(viewer_client.get(DEVICES_URL, {"search": "boiler"})) == ["Boiler room"]
    assert names(viewer_client.get(DEVICES_URL, {"search": "th-00"})) == ["Boiler room", "Cellar"]


def test_devices_are_ordered_by_last_seen_at_never_seen_last(viewer_client):
    for name, hours in [("old", 1), ("never", None), ("new", 5), ("middle", 3)]:
        device = DeviceFactory(name=name)
        if hours is not None:
            add_readings(device, T0 + timedelta(hours=hours))
    assert names(viewer_client.get(DEVICES_URL, {"ordering": "-last_seen_at"})) == ["new", "middle", "old", "never"]
    assert names(viewer_client.get(DEVICES_URL, {"ordering": "last_seen_at"})) == ["old", "middle", "new", "never"]


def test_devices_are_ordered_by_their_fields(viewer_client):
    DeviceFactory(name="b", serial_number="SN-1")
    DeviceFactory(name="a", serial_number="SN-2")
    DeviceFactory(name="c", serial_number="SN-0")
    assert names(viewer_client.get(DEVICES_URL)) == ["a", "b", "c"]
    assert names(viewer_client.get(DEVICES_URL, {"ordering": "-name"})) == ["c", "b", "a"]
    assert names(viewer_client.get(DEVICES_URL, {"ordering": "serial_number"})) == ["c", "b", "a"]
    # created_at is the insert statement's time: c was created last.
    assert names(viewer_client.get(DEVICES_URL, {"ordering": "-created_at"})) == ["c", "a", "b"]
    assert names(viewer_client.get(DEVICES_URL, {"ordering": "-serial_number"})) == ["a", "b", "c"]


def test_empty_entries_in_the_ordering_name_nothing(viewer_client):
    DeviceFactory(name="b", serial_number="SN-1")
    DeviceFactory(name="a", serial_number="SN-2")
    # Found by the schema fuzzer: an empty entry used to be looked up as a field name (a 500).
    assert names(viewer_client.get(DEVICES_URL, {"ordering": ",,,"})) == ["a", "b"]
    assert names(viewer_client.get(DEVICES_URL, {"ordering": ",-name,"})) == ["b", "a"]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"status": "broken"}, "status"),
        ({"device_type": 999999}, "device_type"),
        ({"device_type": "sensor"}, "device_type"),
        ({"ordering": "metadata"}, "ordering"),
        ({"page_size": "0"}, "page_size"),
    ],
)
def test_invalid_filters_are_problems_naming_the_parameter(viewer_client, params, parameter):
    DeviceFactory()
    body = assert_problem(viewer_client.get(DEVICES_URL, params), 400, "invalid_parameter")
    assert [error["parameter"] for error in body["errors"]] == [parameter]


def test_devices_are_paginated(viewer_client):
    for index in range(5):
        DeviceFactory(name=f"device {index}")
    first = viewer_client.get(DEVICES_URL, {"page_size": 2}).json()
    assert first["count"] == 5
    assert [item["name"] for item in first["results"]] == ["device 0", "device 1"]
    last = viewer_client.get(DEVICES_URL, {"page_size": 2, "page": 3}).json()
    assert [item["name"] for item in last["results"]] == ["device 4"]
    assert last["next"] is None
