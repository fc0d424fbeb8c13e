"""Django Admin for device types and devices, including the read-only view of a device's recent readings."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils.html import escape

from iothub.models import Role
from telemetry.models import DeviceStatus, DeviceType, Telemetry
from tests.factories import PASSWORD, DeviceFactory, DeviceTypeFactory, UserFactory

pytestmark = pytest.mark.django_db

HTTPS = {"secure": True}
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def admin_site(client):
    UserFactory(username="boss", role=Role.ADMIN)
    assert client.login(username="boss", password=PASSWORD)
    return client


def test_device_changelist_filters_searches_and_shows_last_seen(admin_site):
    seen = DeviceFactory(name="Boiler", status=DeviceStatus.MAINTENANCE)
    silent = DeviceFactory(name="Roof", status=DeviceStatus.ACTIVE)
    Telemetry.objects.create(device=seen, time=T0, metrics={"t": 1})

    page = admin_site.get("/admin/telemetry/device/", **HTTPS)
    assert page.status_code == 200
    assert page.context["cl"].result_count == 2
    by_name = {device.name: device.last_seen_at for device in page.context["cl"].result_list}
    assert by_name == {"Boiler": T0, "Roof": None}
    assert b"never" in page.content  # the empty value of last_seen_at

    filtered = admin_site.get("/admin/telemetry/device/", {"status__exact": "maintenance"}, **HTTPS)
    assert [device.pk for device in filtered.context["cl"].result_list] == [seen.pk]
    searched = admin_site.get("/admin/telemetry/device/", {"q": silent.serial_number}, **HTTPS)
    assert [device.pk for device in searched.context["cl"].result_list] == [silent.pk]
    by_type = admin_site.get("/admin/telemetry/device/", {"device_type__id__exact": seen.device_type_id}, **HTTPS)
    assert [device.pk for device in by_type.context["cl"].result_list] == [seen.pk]
    # By last seen (the sixth column); PostgreSQL sorts never-seen devices as the latest.
    for order, expected in [("6", [seen.pk, silent.pk]), ("-6", [silent.pk, seen.pk])]:
        ordered = admin_site.get("/admin/telemetry/device/", {"o": order}, **HTTPS)
        assert [device.pk for device in ordered.context["cl"].result_list] == expected


def test_device_change_page_shows_the_20_most_recent_readings(admin_site):
    device = DeviceFactory()
    Telemetry.objects.bulk_create(
        Telemetry(device=device, time=T0 + timedelta(hours=hour), metrics={"reading": hour}) for hour in range(25)
    )
    Telemetry.objects.create(device=DeviceFactory(), time=T0, metrics={"someone_else": 1})

    page = admin_site.get(f"/admin/telemetry/device/{device.pk}/change/", **HTTPS)
    assert page.status_code == 200
    html = page.content.decode()
    assert str(device.pk) in html
    assert html.count("<tr><td>") == 20
    newest, next_newest = escape('{"reading": 24}'), escape('{"reading": 23}')
    assert html.index(newest) < html.index(next_newest)
    assert escape('{"reading": 4}') not in html  # the five oldest are left out
    assert escape('{"reading": 5}') in html
    assert "someone_else" not in html


def test_reading_values_are_escaped_on_the_change_page(admin_site):
    device = DeviceFactory()
    Telemetry.objects.create(device=device, time=T0, metrics={"note": "<script>alert(1)</script>"})
    html = admin_site.get(f"/admin/telemetry/device/{device.pk}/change/", **HTTPS).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_device_without_readings_and_the_add_page_render(admin_site):
    device = DeviceFactory()
    page = admin_site.get(f"/admin/telemetry/device/{device.pk}/change/", **HTTPS)
    assert page.status_code == 200
    assert b"No readings." in page.content
    assert admin_site.get("/admin/telemetry/device/add/", **HTTPS).status_code == 200


def test_device_types_are_listed_and_searched(admin_site):
    DeviceTypeFactory(name="thermometer")
    DeviceTypeFactory(name="meter")
    page = admin_site.get("/admin/telemetry/devicetype/", {"q": "thermo"}, **HTTPS)
    assert page.status_code == 200
    assert [device_type.name for device_type in page.context["cl"].result_list] == ["thermometer"]
    meter = DeviceType.objects.get(name="meter")
    assert admin_site.get(f"/admin/telemetry/devicetype/{meter.pk}/change/", **HTTPS).status_code == 200


def test_device_type_admin_applies_the_api_rules_to_metrics(admin_site):
    device_type = DeviceTypeFactory(name="meter", metrics=[{"name": "kwh"}])
    url = f"/admin/telemetry/devicetype/{device_type.pk}/change/"
    form = {"name": "meter", "description": "", "metrics": '[{"name": "v"}, {"name": "v"}]'}
    refused = admin_site.post(url, form, **HTTPS)
    assert refused.status_code == 200  # the form again, with the error
    assert "/metrics/1/name" in refused.content.decode()
    assert DeviceType.objects.get(pk=device_type.pk).metrics == [{"name": "kwh"}]

    saved = admin_site.post(url, {**form, "metrics": '[{"name": "v", "unit": "V"}]'}, **HTTPS)
    assert saved.status_code == 302
    assert DeviceType.objects.get(pk=device_type.pk).metrics == [{"name": "v", "unit": "V"}]
