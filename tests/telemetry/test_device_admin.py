"""Django Admin for device types and devices: the list, and a device's page with its state, latest values, charts,
events and rules, rendered from the real database on both editions."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from iothub.models import Role
from telemetry.charts import CHART_WINDOWS
from telemetry.models import DeviceStatus, DeviceType, Telemetry
from telemetry.timescale import refresh_aggregates
from telemetry.timescale.retention import configured
from tests.factories import PASSWORD, DeviceFactory, DeviceTypeFactory, RuleFactory, UserFactory, insert_readings

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
    # By last seen (the seventh column); PostgreSQL sorts never-seen devices as the latest.
    for order, expected in [("7", [seen.pk, silent.pk]), ("-7", [silent.pk, seen.pk])]:
        ordered = admin_site.get("/admin/telemetry/device/", {"o": order}, **HTTPS)
        assert [device.pk for device in ordered.context["cl"].result_list] == expected


# A device's page: state, latest values with units, charts from the aggregates, events and rules.

MINUTE = timedelta(minutes=1)
# The page's windows: (span, bucket width).
WINDOWS = {
    "1h": (timedelta(hours=1), MINUTE),
    "24h": (timedelta(hours=24), 15 * MINUTE),
    "7d": (timedelta(days=7), timedelta(hours=1)),
    "30d": (timedelta(days=30), timedelta(hours=6)),
    "90d": (timedelta(days=90), timedelta(days=1)),
}


def charts(html):
    """``{metric: [points of each line]}`` of the page's inline SVG charts, with their declared point counts."""
    found = {}
    for metric, declared, body in re.findall(
        r'<svg class="iothub-chart"[^>]*data-metric="([^"]+)" data-points="(\d+)">(.*?)</svg>', html, re.DOTALL
    ):
        lines = [len(points.split()) for points in re.findall(r'<polyline class="avg" points="([^"]+)"', body)]
        assert sum(lines) == int(declared)
        assert body.count('<polygon class="band"') == len(lines)  # a min-max band per line
        found[metric] = lines
    return found


def runs(times, width, window_start):
    """The lengths of the runs of consecutive ``width`` buckets (from the epoch) holding ``times`` at or after
    ``window_start``'s bucket: what a chart draws as separate lines."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = -(-(window_start - epoch) // width)
    buckets = sorted(bucket for bucket in {(moment - epoch) // width for moment in times} if bucket >= first)
    lengths = []
    for index, bucket in enumerate(buckets):
        if index and bucket == buckets[index - 1] + 1:
            lengths[-1] += 1
        else:
            lengths.append(1)
    return lengths


@pytest.fixture
def thermometer():
    return DeviceTypeFactory(
        name="thermometer",
        expected_interval_seconds=60,
        metrics=[
            {"name": "temperature", "unit": "°C", "description": "air temperature"},
            {"name": "pressure", "unit": "hPa"},
        ],
    )


def device_page(client, device, **params):
    page = client.get(f"/admin/telemetry/device/{device.pk}/change/", params, **HTTPS)
    assert page.status_code == 200
    return page.content.decode()


def test_the_device_page_shows_latest_values_with_their_units(admin_site, thermometer):
    device = DeviceFactory(device_type=thermometer)
    now = datetime.now(UTC)
    insert_readings(
        device,
        [
            (now - 5 * MINUTE, {"temperature": 20.5, "door": "<b>open</b>"}),
            (now - MINUTE, {"temperature": 21.5, "on": True}),
        ],
    )
    html = device_page(admin_site, device)
    latest = dict(
        re.findall(
            r'<th scope="row">(\w+)[^<]*(?:<span[^>]*>[^<]*</span>)?</th>\s*<td class="iothub-value">(.*?)</td>', html
        )
    )
    assert latest == {
        "temperature": "21.5 °C",
        "pressure": '<span class="iothub-none">no reading in 24 h</span>',
        "door": "&lt;b&gt;open&lt;/b&gt;",  # escaped, and undeclared metrics too
        "on": "true",
    }
    assert list(latest) == ["temperature", "pressure", "door", "on"]  # declared first, in their order
    assert "20 most recent readings" not in html


@pytest.mark.parametrize("window", WINDOWS)
def test_the_device_page_charts_each_numeric_metric_over_the_chosen_window(admin_site, thermometer, window):
    device = DeviceFactory(device_type=thermometer)
    now = datetime.now(UTC)
    # Every minute for 20 minutes, silence, then 5 minutes; a reading 3 days back, one 40 days back.
    times = [now - (50 - minute) * MINUTE for minute in range(20)] + [now - minute * MINUTE for minute in range(1, 6)]
    times += [now - timedelta(days=3), now - timedelta(days=40)]
    insert_readings(
        device, [(moment, {"temperature": 20 + index % 7, "label": "x"}) for index, moment in enumerate(times)]
    )
    insert_readings(device, [(now - 2 * MINUTE + timedelta(seconds=1), {"humidity": 40})])
    span, width = WINDOWS[window]

    html = device_page(admin_site, device, window=window)
    # No chart for a string metric, nor for a declared metric without readings.
    assert charts(html) == {"temperature": runs(times, width, now - span), "humidity": [1]}
    assert f"<strong>{CHART_WINDOWS[window].label}</strong>" in html


def test_the_default_window_is_24_hours_and_an_unknown_one_falls_back_to_it(admin_site, thermometer):
    device = DeviceFactory(device_type=thermometer)
    now = datetime.now(UTC)
    insert_readings(device, [(now - timedelta(hours=hours), {"temperature": hours}) for hours in (2, 20, 30)])
    expected = {
        "temperature": runs([now - timedelta(hours=h) for h in (2, 20, 30)], 15 * MINUTE, now - timedelta(hours=24))
    }
    assert expected == {"temperature": [1, 1]}
    assert charts(device_page(admin_site, device)) == expected
    assert charts(device_page(admin_site, device, window="1y")) == expected


@pytest.mark.django_db(transaction=True)
def test_charts_read_the_materialized_aggregates_on_both_editions(client, committed_aggregates, thermometer):
    UserFactory(username="boss", role=Role.ADMIN)
    assert client.login(username="boss", password=PASSWORD)
    device = DeviceFactory(device_type=thermometer)
    now = datetime.now(UTC)
    times = [now - timedelta(hours=hours, minutes=7) for hours in range(1, 30, 2)]
    insert_readings(device, [(moment, {"temperature": 10}) for moment in times])
    refresh_aggregates(**configured())
    with connection.cursor() as cursor:  # the buckets now come from the materialized part (or the rollup stores)
        cursor.execute("SELECT count(*) FROM telemetry_1h WHERE device_id = %s", [device.pk])
        assert cursor.fetchone()[0] == len(times)
    for window in ("24h", "7d", "30d"):
        span, width = WINDOWS[window]
        assert charts(device_page(client, device, window=window)) == {"temperature": runs(times, width, now - span)}


@pytest.mark.parametrize(
    ("interval", "silent_for", "state"),
    [
        (60, timedelta(seconds=30), "online"),
        (60, timedelta(seconds=110), "online"),  # one late reading is not an outage
        (60, timedelta(seconds=130), "offline"),
        (None, timedelta(seconds=10), "unknown"),
        (60, None, "never"),
    ],
)
def test_online_or_offline_follows_the_types_expected_interval(admin_site, interval, silent_for, state):
    device = DeviceFactory(device_type=DeviceTypeFactory(expected_interval_seconds=interval))
    if silent_for is not None:
        insert_readings(device, [(datetime.now(UTC) - silent_for, {"t": 1})])
    html = device_page(admin_site, device)
    assert re.search(rf'<p class="iothub-state iothub-state-{state}" data-state="{state}">', html)
    listed = admin_site.get("/admin/telemetry/device/", **HTTPS).content.decode()
    assert f'<span class="iothub-state iothub-state-{state}"' in listed


def test_the_device_page_links_its_open_events_and_lists_its_rules(admin_site, thermometer):
    device = DeviceFactory(device_type=thermometer, name="boiler")
    other_type = DeviceTypeFactory(name="meter", metrics=[{"name": "temperature"}])
    RuleFactory(name="everyone hot")
    RuleFactory(name="thermometers hot", device_type=thermometer)
    RuleFactory(name="this one hot", device=device)
    RuleFactory(name="meters hot", device_type=other_type)
    RuleFactory(name="someone else hot", device=DeviceFactory(device_type=thermometer))
    insert_readings(device, [(datetime.now(UTC) - MINUTE, {"temperature": 99})])

    html = device_page(admin_site, device)
    assert re.findall(r'<li><a href="/admin/rules/rule/\d+/change/">([^<]+)</a>', html) == [
        "everyone hot",
        "thermometers hot",
        "this one hot",
    ]
    open_url = f"/admin/rules/event/?device__id__exact={device.pk}"
    assert f'<a href="{open_url}">Open events: 3</a>' in html
    events = admin_site.get(open_url, **HTTPS)
    assert len(events.context["cl"].result_list) == 3
    assert f'<a href="{open_url}&amp;status=all">all its events</a>' in html


def test_the_device_page_and_list_take_the_same_queries_however_much_there_is(admin_site, thermometer):
    def queries(url):
        with CaptureQueriesContext(connection) as captured:
            assert admin_site.get(url, **HTTPS).status_code == 200
        return len(captured)

    device = DeviceFactory(device_type=thermometer)
    now = datetime.now(UTC)
    insert_readings(device, [(now - MINUTE, {"temperature": 1})])
    page = f"/admin/telemetry/device/{device.pk}/change/"
    few = queries(page), queries("/admin/telemetry/device/")

    for index in range(6):
        RuleFactory(name=f"rule {index}", metric=f"m{index}")
        DeviceFactory(device_type=thermometer)
    insert_readings(
        device, [(now - minute * MINUTE, {f"m{index}": 99 for index in range(6)}) for minute in range(2, 200, 7)]
    )
    assert queries(page), queries("/admin/telemetry/device/") == few


def test_the_add_page_and_a_device_without_readings_render(admin_site):
    device = DeviceFactory()
    html = device_page(admin_site, device)
    assert "No reading yet." in html
    assert "No metrics" in html
    assert "No numeric readings in the last 24 hours." in html
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


def test_device_type_admin_sets_the_expected_interval(admin_site):
    device_type = DeviceTypeFactory(name="meter")
    url = f"/admin/telemetry/devicetype/{device_type.pk}/change/"
    form = {"name": "meter", "description": "", "metrics": "[]"}
    assert admin_site.post(url, {**form, "expected_interval_seconds": "0"}, **HTTPS).status_code == 200
    assert admin_site.post(url, {**form, "expected_interval_seconds": "300"}, **HTTPS).status_code == 302
    assert DeviceType.objects.get(pk=device_type.pk).expected_interval_seconds == 300
    assert "How often its devices send a reading" in admin_site.get(url, **HTTPS).content.decode()
