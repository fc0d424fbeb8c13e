"""Django Admin for every role, as each one sees it: logged in through the login form, against the real database.

What a role may do comes from iothub.access (the table the API reads too); the expectations here are written out
by hand, so a change to the table that moves Admin away from the API's role matrix fails a test.
"""

import re
from datetime import UTC, datetime

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import URLPattern, URLResolver, get_resolver

from iothub.access import MODEL_ACCESS
from iothub.api.permissions import RolePermission
from iothub.models import User
from rules.models import Event, EventStatus, Notification
from rules.notifications import deliver_due_notifications
from telemetry.models import Device
from tests.factories import PASSWORD, NotificationChannelFactory, RuleFactory, insert_readings

pytestmark = pytest.mark.django_db

HTTPS = {"secure": True}
EVERY_ROLE = ["viewer", "operator", "admin"]
SHARED_MODELS = {
    "telemetry.devicetype",
    "telemetry.device",
    "rules.rule",
    "rules.event",
    "rules.notificationchannel",
    "rules.notification",
}
# Index page: the models each role sees, and those it may add.
SEEN = {
    "viewer": SHARED_MODELS,
    "operator": SHARED_MODELS | {"telemetry.ingestkey"},
    "admin": SHARED_MODELS
    | {
        "telemetry.ingestkey",
        "iothub.user",
        "iothub.logincounter",
        "token_blacklist.outstandingtoken",
        "token_blacklist.blacklistedtoken",
    },
}
ADDABLE = {
    "viewer": set(),
    "operator": {"telemetry.device", "telemetry.ingestkey"},
    "admin": {
        "telemetry.devicetype",
        "telemetry.device",
        "telemetry.ingestkey",
        "rules.rule",
        "rules.notificationchannel",
        "iothub.user",
        "token_blacklist.blacklistedtoken",  # outstanding tokens are issued by logins only
    },
}


def login(client, user):
    """Logs in through Admin's login form, as a person does."""
    response = client.post(
        "/admin/login/", {"username": user.username, "password": PASSWORD, "next": "/admin/"}, **HTTPS
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert response["Location"] == "/admin/"
    return client


@pytest.fixture
def admin_as(client, world):
    def as_role(role):
        return login(client, world.users[role])

    return as_role


def model_links(html, suffix=""):
    return {f"{app}.{model}" for app, model in re.findall(rf'href="/admin/(\w+)/(\w+)/{suffix}"', html)}


def is_editable(html, field):
    return f'name="{field}"' in html and 'name="_save"' in html


@pytest.mark.parametrize("role", EVERY_ROLE)
def test_each_role_sees_its_models_on_the_index(admin_as, role):
    index = admin_as(role).get("/admin/", **HTTPS)
    assert index.status_code == 200
    html = index.content.decode()
    assert model_links(html) == SEEN[role]
    assert model_links(html, "add/") == ADDABLE[role]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/admin/iothub/user/", {"viewer": 403, "operator": 403, "admin": 200}),
        ("/admin/iothub/user/add/", {"viewer": 403, "operator": 403, "admin": 200}),
        ("/admin/token_blacklist/outstandingtoken/", {"viewer": 403, "operator": 403, "admin": 200}),
        ("/admin/telemetry/device/", {"viewer": 200, "operator": 200, "admin": 200}),
        ("/admin/telemetry/device/add/", {"viewer": 403, "operator": 200, "admin": 200}),
        ("/admin/telemetry/devicetype/add/", {"viewer": 403, "operator": 403, "admin": 200}),
        ("/admin/rules/rule/", {"viewer": 200, "operator": 200, "admin": 200}),
        ("/admin/rules/rule/add/", {"viewer": 403, "operator": 403, "admin": 200}),
        ("/admin/rules/event/", {"viewer": 200, "operator": 200, "admin": 200}),
        ("/admin/rules/notification/", {"viewer": 200, "operator": 200, "admin": 200}),
        ("/admin/rules/notificationchannel/", {"viewer": 200, "operator": 200, "admin": 200}),
        ("/admin/rules/notificationchannel/add/", {"viewer": 403, "operator": 403, "admin": 200}),
    ],
)
def test_each_role_reaches_the_pages_it_may(client, world, path, expected):
    answered = {}
    for role in EVERY_ROLE:
        client.logout()
        answered[role] = login(client, world.users[role]).get(path, **HTTPS).status_code
    assert answered == expected


@pytest.mark.parametrize(
    ("model", "field", "editable_by"),
    [
        ("device", "name", {"operator", "admin"}),
        ("devicetype", "name", {"admin"}),
        ("rule", "name", {"admin"}),
        ("channel", "name", {"admin"}),
        ("event", "status", set()),  # read-only for everyone: it changes through the actions
        ("notification", "status", set()),
    ],
)
def test_change_forms_are_editable_only_for_roles_that_may_write(client, world, model, field, editable_by):
    url = {
        "device": f"/admin/telemetry/device/{world.device.pk}/change/",
        "devicetype": f"/admin/telemetry/devicetype/{world.device_type.pk}/change/",
        "rule": f"/admin/rules/rule/{world.rule.pk}/change/",
        "channel": f"/admin/rules/notificationchannel/{world.channel.pk}/change/",
        "event": f"/admin/rules/event/{world.open_event.pk}/change/",
        "notification": f"/admin/rules/notification/{world.notification.pk}/change/",
    }[model]
    editable = set()
    for role in EVERY_ROLE:
        client.logout()
        page = login(client, world.users[role]).get(url, **HTTPS)
        assert page.status_code == 200
        if is_editable(page.content.decode(), field):
            editable.add(role)
    assert editable == editable_by


@pytest.mark.parametrize(
    ("role", "actions"),
    [
        ("viewer", set()),
        ("operator", {"acknowledge", "resolve"}),
        ("admin", {"acknowledge", "resolve"}),
    ],
)
def test_event_actions_each_role_is_offered(admin_as, role, actions):
    html = admin_as(role).get("/admin/rules/event/", **HTTPS).content.decode()
    offered = set(re.findall(r'<option value="(\w+)"', html)) & {"acknowledge", "resolve", "delete_selected"}
    assert offered == actions
    # Every role that sees events may export them (the CSV action), so the actions bar, note included, is there.
    assert "export_events_csv" in html
    assert 'name="note"' in html


def act_on_events(client, action, events, note=""):
    return client.post(
        "/admin/rules/event/",
        {"action": action, "_selected_action": [event.pk for event in events], "note": note, "index": 0},
        **HTTPS,
    )


def test_an_operator_acknowledges_and_resolves_with_a_note(admin_as, world):
    client = admin_as("operator")
    response = act_on_events(client, "acknowledge", [world.open_event], note="  technician on the way ")
    assert response.status_code == 302
    event = Event.objects.get(pk=world.open_event.pk)
    assert (event.status, event.acknowledged_note, event.acknowledged_by) == (
        EventStatus.ACKNOWLEDGED,
        "technician on the way",
        world.users["operator"],
    )
    act_on_events(client, "resolve", [event], note="valve replaced")
    event.refresh_from_db()
    assert (event.status, event.resolved_note) == (EventStatus.RESOLVED, "valve replaced")


def test_a_note_longer_than_the_api_allows_acknowledges_nothing(admin_as, world):
    act_on_events(admin_as("operator"), "acknowledge", [world.open_event], note="x" * 2001)
    assert Event.objects.get(pk=world.open_event.pk).status == EventStatus.OPEN


def test_a_viewer_cannot_acknowledge(admin_as, world):
    response = act_on_events(admin_as("viewer"), "acknowledge", [world.open_event], note="sneaky")
    assert response.status_code in (200, 302)
    event = Event.objects.get(pk=world.open_event.pk)
    assert (event.status, event.acknowledged_note) == (EventStatus.OPEN, "")


@pytest.mark.parametrize("role", EVERY_ROLE)
def test_events_are_never_deleted_in_admin(admin_as, world, role):
    client = admin_as(role)
    url = f"/admin/rules/event/{world.open_event.pk}/delete/"
    assert client.get(url, **HTTPS).status_code == 403
    assert client.post(url, {"post": "yes"}, **HTTPS).status_code == 403
    act_on_events(client, "delete_selected", [world.open_event])
    assert Event.objects.filter(pk=world.open_event.pk).exists()


@pytest.mark.parametrize(
    ("role", "buttons"),
    [("viewer", set()), ("operator", {"Acknowledge", "Resolve"}), ("admin", {"Acknowledge", "Resolve"})],
)
def test_event_page_buttons_each_role_is_offered(admin_as, world, role, buttons):
    html = admin_as(role).get(f"/admin/rules/event/{world.open_event.pk}/change/", **HTTPS).content.decode()
    assert set(re.findall(r'formaction="[^"]+" name="transition" value="\w+">(\w+)</button>', html)) == buttons
    assert ('name="note"' in html) == bool(buttons)
    assert "/delete/" not in html  # no role deletes events


def test_an_operator_acknowledges_and_resolves_from_the_event_page(admin_as, world):
    client = admin_as("operator")
    event = world.open_event
    client.post(f"/admin/rules/event/{event.pk}/acknowledge/", {"note": "technician on the way"}, **HTTPS)
    client.post(f"/admin/rules/event/{event.pk}/resolve/", {"note": "valve replaced"}, **HTTPS)
    event.refresh_from_db()
    assert (event.status, event.acknowledged_note, event.resolved_note, event.resolved_by) == (
        EventStatus.RESOLVED,
        "technician on the way",
        "valve replaced",
        world.users["operator"],
    )
    entries = LogEntry.objects.filter(object_id=str(event.pk), content_type__model="event").order_by("id")
    assert [(entry.user.role, entry.get_change_message()) for entry in entries] == [
        ("operator", "Acknowledged with the note: technician on the way."),
        ("operator", "Resolved with the note: valve replaced."),
    ]
    history = client.get(f"/admin/rules/event/{event.pk}/history/", **HTTPS).content.decode()
    assert "Resolved with the note: valve replaced." in history


def test_a_viewer_cannot_use_the_event_page_buttons(admin_as, world):
    client = admin_as("viewer")
    for action in ("acknowledge", "resolve"):
        url = f"/admin/rules/event/{world.open_event.pk}/{action}/"
        assert client.post(url, {"note": "sneaky"}, **HTTPS).status_code == 403
    assert Event.objects.get(pk=world.open_event.pk).status == EventStatus.OPEN
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize("role", EVERY_ROLE)
def test_every_role_sees_a_devices_state_values_charts_and_events(admin_as, world, role):
    url = f"/admin/telemetry/device/{world.device.pk}/change/?window=1h"
    html = admin_as(role).get(url, **HTTPS).content.decode()
    assert 'data-state="unknown"' in html  # its type sets no expected interval
    assert '<td class="iothub-value">20 °C</td>' in html  # the newest of its readings, with the declared unit
    assert 'data-metric="temperature" data-points="15"' in html  # a reading a minute for 15 minutes
    assert f"?device__id__exact={world.device.pk}" in html
    assert is_editable(html, "name") == (role != "viewer")


def device_form(world, **fields):
    return {
        "name": "fan",
        "serial_number": "SN-FAN",
        "location": "",
        "status": "active",
        "device_type": world.device_type.pk,
        "metadata": "{}",
        **fields,
    }


def test_an_operator_manages_devices_as_in_the_api(admin_as, world):
    client = admin_as("operator")
    assert client.post("/admin/telemetry/device/add/", device_form(world), **HTTPS).status_code == 302
    fan = Device.objects.get(serial_number="SN-FAN")
    change = client.post(f"/admin/telemetry/device/{fan.pk}/change/", device_form(world, location="roof"), **HTTPS)
    assert change.status_code == 302
    assert Device.objects.get(pk=fan.pk).location == "roof"
    assert client.post(f"/admin/telemetry/device/{fan.pk}/delete/", {"post": "yes"}, **HTTPS).status_code == 302
    assert not Device.objects.filter(pk=fan.pk).exists()


def test_a_viewer_changes_no_device(admin_as, world):
    client = admin_as("viewer")
    assert client.post("/admin/telemetry/device/add/", device_form(world), **HTTPS).status_code == 403
    url = f"/admin/telemetry/device/{world.device.pk}/change/"
    assert client.post(url, device_form(world, location="roof"), **HTTPS).status_code == 403
    assert (
        client.post(f"/admin/telemetry/device/{world.device.pk}/delete/", {"post": "yes"}, **HTTPS).status_code == 403
    )
    assert Device.objects.get(pk=world.device.pk).location == world.device.location


def test_a_retired_role_loses_admin_at_once(admin_as, world):
    client = admin_as("operator")
    User.objects.filter(pk=world.users["operator"].pk).update(is_active=False)
    assert client.get("/admin/", **HTTPS).status_code == 302


def _api_model_views():
    """``(model label, view class)`` for every API view backed by a model's queryset."""

    def walk(patterns):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                view = getattr(pattern.callback, "cls", None)
                if getattr(view, "queryset", None) is not None or "get_queryset" in vars(view or object):
                    yield view().get_queryset().model._meta.label_lower, view

    return list(walk(get_resolver().url_patterns))


def test_the_api_reads_the_same_table_as_admin():
    views = _api_model_views()
    assert {label for label, _ in views} == {
        "iothub.user",
        "telemetry.devicetype",
        "telemetry.device",
        "telemetry.ingestkey",
        "rules.rule",
        "rules.event",
        "rules.notificationchannel",
        "rules.notification",
    }
    for label, view in views:
        (permission,) = [p for p in view.permission_classes if issubclass(p, RolePermission)]
        access = MODEL_ACCESS[label]
        assert (permission.read_roles, permission.write_roles) == (access.read, access.write), view


SECRET = "s3cret-token"


@pytest.mark.parametrize(
    ("page", "readers"),
    [
        ("/admin/rules/notificationchannel/", {"admin"}),
        ("/admin/rules/notificationchannel/{channel}/change/", {"admin"}),
        ("/admin/rules/notification/", set()),
        ("/admin/rules/notification/{notification}/change/", set()),
    ],
)
def test_channel_secrets_in_admin_for_admins_only(client, world, settings, page, readers):
    channel = NotificationChannelFactory(
        name="pager", kind="webhook", target=f"https://hooks.example.com/T0KEN-PATH?token={SECRET}"
    )
    RuleFactory(name="paged", channels=[channel], dedupe=False)
    insert_readings(world.device, [(datetime.now(UTC), {"temperature": 99})])
    deliver_due_notifications()  # webhooks are off: the request is recorded, not sent
    notification = Notification.objects.get(channel=channel)
    assert notification.request["url"] == "https://hooks.example.com/…"
    url = page.format(channel=channel.pk, notification=notification.pk)
    read = set()
    for role in EVERY_ROLE:
        client.logout()
        html = login(client, world.users[role]).get(url, **HTTPS).content.decode()
        assert "pager" in html or "notification" in url
        if SECRET in html:
            read.add(role)
    assert read == readers


def test_only_admins_find_channels_by_target_in_admin(client, world):
    # The search box echoes the query, so the answer is whether the channel is listed: a search would be an oracle.
    channel = NotificationChannelFactory(name="pager", kind="webhook", target=f"https://hooks.example.com/?t={SECRET}")
    found = set()
    for role in EVERY_ROLE:
        client.logout()
        page = login(client, world.users[role]).get("/admin/rules/notificationchannel/", {"q": SECRET[:6]}, **HTTPS)
        if f"/admin/rules/notificationchannel/{channel.pk}/change/" in page.content.decode():
            found.add(role)
    assert found == {"admin"}
