"""The notification-channels/ and notifications/ APIs and their Django Admin pages."""

from datetime import timedelta

import pytest
from django.utils import timezone

from rules.models import NotificationChannel, NotificationStatus
from tests.conftest import assert_problem
from tests.factories import (
    PASSWORD,
    DeviceFactory,
    NotificationChannelFactory,
    RuleFactory,
    UserFactory,
    insert_readings,
)

pytestmark = pytest.mark.django_db

CHANNELS_URL = "/api/v1/notification-channels/"
NOTIFICATIONS_URL = "/api/v1/notifications/"
WEBHOOK = {"name": "ops webhook", "kind": "webhook", "target": "https://hooks.example.com/iot?token=abc"}


def breach(device, *, at):
    """A reading that breaches the factory's rule (temperature > 30): the trigger queues a notification per channel
    of the rule."""
    insert_readings(device, [(at, {"temperature": 31})])


@pytest.mark.parametrize(
    ("payload", "stored_target"),
    [
        (WEBHOOK, WEBHOOK["target"]),
        ({"name": "mail", "kind": "email", "target": " ops@example.com,oncall@example.com "}, None),
        ({"name": "log", "kind": "log"}, ""),
        ({"name": "log", "kind": "log", "target": "night shift"}, "night shift"),
    ],
)
def test_admin_creates_channels_of_each_kind(admin_client, payload, stored_target):
    response = admin_client.post(CHANNELS_URL, payload)

    assert response.status_code == 201, response.content
    body = response.json()
    expected = "ops@example.com, oncall@example.com" if stored_target is None else stored_target
    assert body["target"] == expected
    assert body["enabled"] is True
    assert body["created_at"].endswith("Z")
    assert NotificationChannel.objects.get(pk=body["id"]).target == expected


def test_admin_updates_and_deletes_a_channel(admin_client):
    channel = NotificationChannelFactory(kind="email", target="ops@example.com")
    url = f"{CHANNELS_URL}{channel.pk}/"

    assert admin_client.patch(url, {"enabled": False}).json()["enabled"] is False
    switched = admin_client.patch(url, {"kind": "webhook", "target": "http://127.0.0.1:9/hook"})
    assert switched.status_code == 200, switched.content
    assert switched.json()["kind"] == "webhook"

    assert admin_client.delete(url).status_code == 204
    assert not NotificationChannel.objects.filter(pk=channel.pk).exists()


@pytest.mark.parametrize(
    ("change", "pointer", "code"),
    [
        ({"kind": "email", "target": "not-an-address"}, "/target", "invalid"),
        ({"kind": "email", "target": "ops@example.com, nope"}, "/target", "invalid"),
        ({"kind": "email", "target": " , "}, "/target", "required"),
        ({"target": "ftp://hooks.example.com/iot"}, "/target", "invalid"),
        ({"target": "hooks.example.com/iot"}, "/target", "invalid"),
        ({"target": ""}, "/target", "required"),
        ({"kind": "sms"}, "/kind", "invalid_choice"),
        ({"kind": None}, "/kind", "null"),
        ({"url": "https://hooks.example.com"}, "/url", "unknown_field"),
    ],
)
def test_invalid_channels_are_problems_with_pointers(admin_client, change, pointer, code):
    body = assert_problem(admin_client.post(CHANNELS_URL, {**WEBHOOK, **change}), 400, "invalid")
    assert [(error["pointer"], error["code"]) for error in body["errors"]] == [(pointer, code)], body
    assert not NotificationChannel.objects.exists()


def test_channel_names_are_unique(admin_client):
    NotificationChannelFactory(name=WEBHOOK["name"])
    body = assert_problem(admin_client.post(CHANNELS_URL, WEBHOOK), 400)
    assert body["errors"][0]["pointer"] == "/name"


def test_changing_the_kind_alone_rechecks_the_existing_target(admin_client):
    channel = NotificationChannelFactory(kind="webhook", target="https://hooks.example.com/iot")

    body = assert_problem(admin_client.patch(f"{CHANNELS_URL}{channel.pk}/", {"kind": "email"}), 400)

    assert body["errors"][0]["pointer"] == "/target"
    channel.refresh_from_db()
    assert channel.kind == "webhook"


@pytest.mark.parametrize("role_client", ["operator", "viewer"], indirect=True)
def test_operators_and_viewers_read_channels_but_may_not_write(role_client):
    channel = NotificationChannelFactory(name="ops log")
    url = f"{CHANNELS_URL}{channel.pk}/"

    assert [item["name"] for item in role_client.get(CHANNELS_URL).json()["results"]] == ["ops log"]
    assert role_client.get(url).json()["kind"] == "log"
    assert_problem(role_client.post(CHANNELS_URL, WEBHOOK), 403, "permission_denied")
    assert_problem(role_client.patch(url, {"enabled": False}), 403, "permission_denied")
    assert_problem(role_client.delete(url), 403, "permission_denied")
    channel.refresh_from_db()
    assert channel.enabled


def test_anonymous_callers_see_neither_channels_nor_notifications(api_client):
    assert_problem(api_client.get(CHANNELS_URL), 401, "not_authenticated")
    assert_problem(api_client.get(NOTIFICATIONS_URL), 401, "not_authenticated")


@pytest.fixture
def queued():
    """Two events of a rule with two channels: the trigger queued four notifications."""
    log = NotificationChannelFactory(name="log")
    mail = NotificationChannelFactory(name="mail", kind="email", target="ops@example.com")
    rule = RuleFactory(channels=[log, mail])
    first, second = DeviceFactory(), DeviceFactory()
    breach(first, at=timezone.now() - timedelta(minutes=2))
    breach(second, at=timezone.now() - timedelta(minutes=1))
    rows = {
        f"{device}_{channel.name}": rule.events.get(device=target).notifications.get(channel=channel)
        for device, target in [("first", first), ("second", second)]
        for channel in (log, mail)
    }
    # The worker failed one of them for good.
    failed = rows["first_mail"]
    failed.status, failed.attempts, failed.last_error = NotificationStatus.FAILED, 5, "SMTP down"
    failed.save()
    return rows


@pytest.mark.parametrize("role_client", ["admin", "operator", "viewer"], indirect=True)
def test_every_role_reads_notifications_newest_first(role_client, queued):
    response = role_client.get(NOTIFICATIONS_URL)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 4
    ids = [item["id"] for item in body["results"]]
    assert ids == sorted(ids, reverse=True)
    failed = role_client.get(f"{NOTIFICATIONS_URL}{queued['first_mail'].pk}/").json()
    assert failed["status"] == "failed"
    assert failed["attempts"] == 5
    assert failed["last_error"] == "SMTP down"
    assert failed["event"] == queued["first_mail"].event_id
    assert failed["channel"] == queued["first_mail"].channel_id
    assert failed["payload"]["message"]
    assert {"next_attempt_at", "claimed_at", "sent_at", "created_at", "updated_at"} <= failed.keys()


def test_notifications_filter_by_event_status_and_channel(viewer_client, queued):
    def names(**params):
        found = {item["id"] for item in viewer_client.get(NOTIFICATIONS_URL, params).json()["results"]}
        return {name for name, row in queued.items() if row.pk in found}

    assert names(event=queued["first_log"].event_id) == {"first_log", "first_mail"}
    assert names(status="failed") == {"first_mail"}
    assert names(status="pending") == {"first_log", "second_log", "second_mail"}
    assert names(status=["failed", "sent"]) == {"first_mail"}
    assert names(channel=queued["first_log"].channel_id) == {"first_log", "second_log"}
    assert names(channel=queued["first_mail"].channel_id, event=queued["second_log"].event_id) == {"second_mail"}


def test_notifications_are_paginated(viewer_client, queued):
    page = viewer_client.get(NOTIFICATIONS_URL, {"page_size": 3}).json()
    assert page["count"] == 4
    assert len(page["results"]) == 3
    assert page["previous"] is None
    # The oldest: the first event's two notifications share created_at, and the trigger inserts them in no set
    # order (the channels' join), so the oldest is the lower id of the two.
    oldest = min(queued["first_log"].pk, queued["first_mail"].pk)
    assert [item["id"] for item in viewer_client.get(page["next"]).json()["results"]] == [oldest]


@pytest.mark.parametrize(("parameter", "value"), [("status", "lost"), ("channel", "999999"), ("event", "x")])
def test_invalid_notification_filters_name_the_parameter(viewer_client, parameter, value):
    body = assert_problem(viewer_client.get(NOTIFICATIONS_URL, {parameter: value}), 400, "invalid_parameter")
    assert [error["parameter"] for error in body["errors"]] == [parameter]


def test_notifications_are_read_only_even_for_admins(admin_client, queued):
    notification = queued["first_log"]
    url = f"{NOTIFICATIONS_URL}{notification.pk}/"
    assert_problem(admin_client.post(NOTIFICATIONS_URL, {"event": notification.event_id}), 405)
    assert_problem(admin_client.patch(url, {"status": "sent"}), 405)
    assert_problem(admin_client.delete(url), 405)
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PENDING


HTTPS = {"secure": True}


@pytest.fixture
def admin_browser(client):
    UserFactory(username="boss", role="admin")
    assert client.login(username="boss", password=PASSWORD)
    return client


def test_admin_edits_channels_with_target_validation(admin_browser):
    form = {"name": "pager", "kind": "webhook", "target": "gopher://x", "enabled": "on"}
    refused = admin_browser.post("/admin/rules/notificationchannel/add/", form, **HTTPS)
    assert refused.status_code == 200
    assert b"Enter an http:// or https:// URL." in refused.content
    assert not NotificationChannel.objects.exists()

    form["target"] = "https://pager.example.com/hook"
    created = admin_browser.post("/admin/rules/notificationchannel/add/", form, **HTTPS)
    assert created.status_code == 302
    assert NotificationChannel.objects.get(name="pager").target == "https://pager.example.com/hook"


def test_notifications_are_read_only_in_admin_with_a_retry_action(
    admin_browser, queued, django_capture_on_commit_callbacks
):
    pending, failed = queued["first_log"], queued["first_mail"]
    changelist = admin_browser.get("/admin/rules/notification/", {"status__exact": "failed"}, **HTTPS)
    assert changelist.status_code == 200
    assert f"/admin/rules/notification/{failed.pk}/change/".encode() in changelist.content
    assert f"/admin/rules/notification/{pending.pk}/change/".encode() not in changelist.content
    assert admin_browser.get("/admin/rules/notification/add/", **HTTPS).status_code == 403
    detail = admin_browser.get(f"/admin/rules/notification/{failed.pk}/change/", **HTTPS)
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content

    action = {"action": "retry_now", "_selected_action": [failed.pk]}
    with django_capture_on_commit_callbacks() as callbacks:
        assert admin_browser.post("/admin/rules/notification/", action, **HTTPS).status_code == 302
    assert [callback.__name__ for callback in callbacks] == ["notify_pending"], "the worker is woken"

    failed.refresh_from_db()
    assert failed.status == NotificationStatus.PENDING
    assert failed.attempts == 5, "one more try, not a fresh schedule"
    assert failed.next_attempt_at <= timezone.now()
