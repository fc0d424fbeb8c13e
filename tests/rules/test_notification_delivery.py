"""Notification delivery by the worker, against the real database: each channel kind, retries with backoff,
concurrent workers, crash recovery and the NOTIFY wake-up.

Notifications are queued the realistic way: a reading breaches a rule and the database trigger writes the event and
its pending notifications. Webhooks only ever go to a local http.server on 127.0.0.1.
"""

import importlib
import json
import logging
import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.apps import apps as django_apps
from django.core import mail
from django.db import connection, connections
from django.db.models.functions import Now
from django.utils import timezone

from iothub.worker import Registry, Worker
from rules import notifications, tasks
from rules.models import Notification, NotificationChannel, NotificationStatus
from rules.notifications import (
    NOTIFY_CHANNEL,
    claim_due_notifications,
    deliver_due_notifications,
    recover_stalled_notifications,
    retry_delay,
)
from tests.factories import DeviceFactory, NotificationChannelFactory, RuleFactory, insert_readings


def queue_notifications(channel, *, count=1, severity="warning"):
    """``count`` notifications on ``channel``, queued by the rule trigger for breaching readings."""
    rule = RuleFactory(channels=[channel], dedupe=False, severity=severity, message_template="{metric} is {value}")
    device = DeviceFactory(name="boiler")
    start = timezone.now() - timedelta(minutes=1)
    insert_readings(device, [(start + timedelta(seconds=i), {"temperature": 31 + i}) for i in range(count)])
    queued = list(Notification.objects.filter(channel=channel, event__rule=rule).order_by("id"))
    assert len(queued) == count
    return queued


def make_due(notification):
    """Let the backoff elapse without waiting for it."""
    Notification.objects.filter(pk=notification.pk).update(next_attempt_at=Now())


class WebhookReceiver:
    """A local HTTP server recording every request; ``status`` and ``delay`` shape its answers."""

    def __init__(self):
        self.requests = []
        self.status = 204
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/iot"
        # How the URL is logged and stored: its path may be a secret (rules.notifications.redact_url).
        self.shown_url = f"http://127.0.0.1:{self.server.server_port}/…"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def closed_port():
    """A local port nobody listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db
def test_log_channel_writes_the_event_to_the_log_at_its_severity(caplog):
    channel = NotificationChannelFactory(kind="log", target="ops-room")
    [notification] = queue_notifications(channel, severity="critical")
    caplog.set_level(logging.INFO, logger="iothub.notifications")

    assert deliver_due_notifications() == 1

    [record] = [record for record in caplog.records if record.name == "iothub.notifications"]
    assert record.levelno == logging.CRITICAL
    assert "[ops-room] CRITICAL" in record.getMessage()
    assert "temperature is 31" in record.getMessage()
    assert "boiler" in record.getMessage()
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT
    assert notification.attempts == 1
    assert notification.sent_at is not None
    assert notification.claimed_at is None
    assert notification.last_error == ""


@pytest.mark.django_db
def test_email_channel_mails_every_address_through_djangos_backend(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel = NotificationChannelFactory(kind="email", target="ops@example.com, oncall@example.com")
    [notification] = queue_notifications(channel)

    deliver_due_notifications()

    [message] = mail.outbox
    assert message.to == ["ops@example.com", "oncall@example.com"]
    assert message.from_email == settings.DEFAULT_FROM_EMAIL
    assert message.subject == f"[IoT Hub] warning: {notification.event.rule_name}"
    assert "temperature is 31" in message.body
    assert "boiler" in message.body
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT


@pytest.mark.django_db
def test_webhook_is_recorded_but_not_sent_by_default(settings, receiver):
    assert settings.NOTIFICATION_WEBHOOKS_ENABLED is False
    channel = NotificationChannelFactory(kind="webhook", target=receiver.url)
    [notification] = queue_notifications(channel)

    deliver_due_notifications()

    assert receiver.requests == []
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT
    assert notification.last_error == ""
    assert notification.request["sent"] is False
    assert (notification.request["method"], notification.request["url"]) == ("POST", receiver.shown_url)
    assert notification.request["body"]["event"]["event_id"] == notification.event_id


@pytest.mark.django_db
def test_webhook_posts_the_event_as_json_when_enabled(settings, receiver):
    settings.NOTIFICATION_WEBHOOKS_ENABLED = True
    channel = NotificationChannelFactory(kind="webhook", target=receiver.url)
    [notification] = queue_notifications(channel)

    deliver_due_notifications()

    [request] = receiver.requests
    assert request["path"] == "/hooks/iot"
    assert request["headers"]["Content-Type"] == "application/json"
    event = notification.event
    assert request["body"]["notification_id"] == notification.pk
    assert request["body"]["event"] == {
        "event_id": event.pk,
        "rule_id": event.rule_id,
        "rule_name": event.rule_name,
        "device_id": str(event.device_id),
        "device_name": "boiler",
        "severity": "warning",
        "message": "temperature is 31",
        "triggered_at": request["body"]["event"]["triggered_at"],
        "trigger_values": {"metric": "temperature", "value": 31, "operator": "gt", "threshold": 30},
    }
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT
    assert notification.last_error == ""
    assert notification.request["sent"] is True
    assert notification.request["body"] == request["body"]


@pytest.mark.django_db
def test_failures_retry_with_exponential_backoff_until_max_attempts(settings, closed_port):
    closed_port_url = f"http://127.0.0.1:{closed_port}/hook"
    settings.NOTIFICATION_WEBHOOKS_ENABLED = True
    settings.NOTIFICATION_MAX_ATTEMPTS = 4
    channel = NotificationChannelFactory(kind="webhook", target=closed_port_url)
    [notification] = queue_notifications(channel)

    for attempt, delay in [(1, 30), (2, 60), (3, 120)]:
        assert deliver_due_notifications() == 1
        notification.refresh_from_db()
        assert notification.status == NotificationStatus.PENDING
        assert notification.attempts == attempt
        assert notification.last_error.startswith(f"POST http://127.0.0.1:{closed_port}/…: ")
        assert "refused" in notification.last_error.lower()
        # Both are the same statement's now(): the wait is exact.
        assert notification.next_attempt_at - notification.updated_at == timedelta(seconds=delay)
        assert deliver_due_notifications() == 0, "not due again before the backoff has elapsed"
        make_due(notification)

    assert deliver_due_notifications() == 1
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED
    assert notification.attempts == 4
    make_due(notification)
    assert deliver_due_notifications() == 0, "a failed notification is not retried by itself"


def test_the_backoff_doubles_up_to_an_hour():
    assert [retry_delay(n).total_seconds() for n in range(1, 10)] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]


@pytest.mark.django_db
def test_an_error_status_from_the_receiver_is_a_failure(settings, receiver):
    settings.NOTIFICATION_WEBHOOKS_ENABLED = True
    receiver.status = 503
    channel = NotificationChannelFactory(kind="webhook", target=receiver.url)
    [notification] = queue_notifications(channel)

    deliver_due_notifications()

    assert len(receiver.requests) == 1
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PENDING
    assert notification.last_error == f"POST {receiver.shown_url}: HTTP 503 Service Unavailable"

    receiver.status = 200
    make_due(notification)
    deliver_due_notifications()
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT
    assert notification.attempts == 2
    assert notification.last_error == ""


@pytest.mark.django_db
def test_a_receiver_that_hangs_is_given_up_after_the_timeout(settings, receiver, monkeypatch):
    settings.NOTIFICATION_WEBHOOKS_ENABLED = True
    monkeypatch.setattr(notifications, "WEBHOOK_TIMEOUT", 0.3)
    receiver.delay = 1.5
    channel = NotificationChannelFactory(kind="webhook", target=receiver.url)
    [notification] = queue_notifications(channel)

    started = time.monotonic()
    deliver_due_notifications()

    assert time.monotonic() - started < 1.5
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PENDING
    assert "timed out" in notification.last_error


@pytest.mark.django_db
def test_an_unreachable_mail_server_is_a_failure_to_retry(settings, closed_port):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port
    channel = NotificationChannelFactory(kind="email", target="ops@example.com")
    [notification] = queue_notifications(channel)

    deliver_due_notifications()

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.PENDING
    assert notification.attempts == 1
    assert notification.last_error.startswith("ConnectionRefusedError: ")


@pytest.mark.django_db
def test_a_channel_disabled_after_queueing_fails_the_notification_without_delivering(caplog):
    channel = NotificationChannelFactory(kind="log")
    [notification] = queue_notifications(channel)
    channel.enabled = False
    channel.save()
    caplog.set_level(logging.INFO, logger="iothub.notifications")

    deliver_due_notifications()

    notification.refresh_from_db()
    assert notification.status == NotificationStatus.FAILED
    assert notification.attempts == 0
    assert notification.last_error == "The channel is disabled; not delivered."
    assert "temperature is 31" not in caplog.text


@pytest.mark.django_db
def test_a_crashed_workers_claims_are_recovered_counting_the_attempt(settings):
    settings.NOTIFICATION_MAX_ATTEMPTS = 3
    channel = NotificationChannelFactory(kind="log")
    crashed, in_flight, last_chance = queue_notifications(channel, count=3)
    Notification.objects.filter(pk=last_chance.pk).update(attempts=2)
    # A worker claims them all and dies before delivering any.
    assert len(claim_due_notifications()) == 3
    assert deliver_due_notifications() == 0, "claimed rows are nobody else's"
    Notification.objects.filter(pk__in=[crashed.pk, last_chance.pk]).update(claimed_at=Now() - timedelta(minutes=6))
    Notification.objects.filter(pk=in_flight.pk).update(claimed_at=Now() - timedelta(minutes=4))

    assert recover_stalled_notifications() == 2

    crashed.refresh_from_db()
    assert crashed.status == NotificationStatus.PENDING
    assert crashed.attempts == 1
    assert crashed.claimed_at is None
    assert crashed.last_error.startswith("Interrupted")
    in_flight.refresh_from_db()
    assert in_flight.status == NotificationStatus.SENDING, "a claim younger than the timeout is left alone"
    last_chance.refresh_from_db()
    assert last_chance.status == NotificationStatus.FAILED
    assert last_chance.attempts == 3

    assert deliver_due_notifications() == 1
    crashed.refresh_from_db()
    assert crashed.status == NotificationStatus.SENT
    assert crashed.attempts == 2


@pytest.mark.django_db
def test_the_stalled_threshold_is_the_setting(settings):
    settings.NOTIFICATION_STALLED_AFTER = 30
    channel = NotificationChannelFactory(kind="log")
    older, younger = queue_notifications(channel, count=2)
    assert len(claim_due_notifications()) == 2
    Notification.objects.filter(pk=older.pk).update(claimed_at=Now() - timedelta(seconds=31))
    Notification.objects.filter(pk=younger.pk).update(claimed_at=Now() - timedelta(seconds=29))

    assert recover_stalled_notifications() == 1
    assert Notification.objects.get(pk=older.pk).status == NotificationStatus.PENDING
    assert Notification.objects.get(pk=younger.pk).status == NotificationStatus.SENDING


def _listen(channel):
    """A separate connection LISTENing on ``channel``."""
    listener = connection.get_new_connection(connection.get_connection_params())
    listener.autocommit = True
    with listener.cursor() as cursor:
        cursor.execute(f'LISTEN "{channel}"')
    return listener


@pytest.mark.django_db(transaction=True)
def test_a_call_out_of_time_releases_its_unattempted_claims_and_notifies_itself(settings, receiver):
    settings.NOTIFICATION_WEBHOOKS_ENABLED = True
    receiver.delay = 0.3
    channel = NotificationChannelFactory(kind="webhook", target=receiver.url)
    queue_notifications(channel, count=5)
    listener = _listen(NOTIFY_CHANNEL)
    try:
        # The second delivery ends past the budget: the call returns, handing back the three it never tried.
        assert deliver_due_notifications(batch_size=5, time_budget=0.5) == 2

        rows = Notification.objects.filter(channel=channel)
        assert rows.filter(status=NotificationStatus.SENT).count() == 2
        released = rows.filter(status=NotificationStatus.PENDING)
        assert released.count() == 3
        assert all(row.attempts == 0 and row.claimed_at is None for row in released)
        listener.poll()
        assert [notify.channel for notify in listener.notifies] == [NOTIFY_CHANNEL], "more work is announced"
    finally:
        listener.close()

    receiver.delay = 0
    assert deliver_due_notifications() == 3
    assert len(receiver.requests) == 5


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_deliver_the_same_notification_twice(settings, receiver):
    settings.NOTIFICATION_WEBHOOKS_ENABLED = True
    receiver.delay = 0.01
    channel = NotificationChannelFactory(kind="webhook", target=receiver.url)
    queued = queue_notifications(channel, count=40)
    start = threading.Barrier(2)
    attempted = {}

    def work(name):
        # Each thread has its own Django connection, like two worker processes.
        try:
            start.wait(timeout=10)
            attempted[name] = 0
            while done := deliver_due_notifications(batch_size=3):
                attempted[name] += done
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    delivered = sorted(request["body"]["notification_id"] for request in receiver.requests)
    assert delivered == [notification.pk for notification in queued]
    assert attempted["a"] + attempted["b"] == 40
    assert attempted["a"] > 0, "both workers took a share"
    assert attempted["b"] > 0, "both workers took a share"
    assert set(Notification.objects.filter(channel=channel).values_list("status", "attempts")) == {("sent", 1)}


def _wait_until(predicate, *, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.django_db(transaction=True)
def test_the_worker_delivers_on_notify_without_waiting_for_the_poll():
    registry = Registry()
    registry.on_notify(NOTIFY_CHANNEL)(tasks.deliver_notifications)
    worker = Worker(registry, poll_interval=60)
    thread = threading.Thread(target=worker.run, daemon=True)
    channel = NotificationChannelFactory(kind="log")
    [at_start] = queue_notifications(channel)

    def status(notification):
        return Notification.objects.get(pk=notification.pk).status

    thread.start()
    try:
        assert _wait_until(lambda: status(at_start) == NotificationStatus.SENT), "the worker delivers at start"
        # Queued without NOTIFY: the idle worker does not see it for a whole poll interval.
        unannounced = Notification.objects.create(event=at_start.event, channel=NotificationChannelFactory())
        time.sleep(1)
        assert status(unannounced) == NotificationStatus.PENDING

        sent = time.monotonic()
        [announced] = queue_notifications(channel)  # the trigger's NOTIFY commits with the reading

        assert _wait_until(lambda: status(announced) == status(unannounced) == NotificationStatus.SENT)
        assert time.monotonic() - sent < 5 < 60
    finally:
        worker.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_the_rules_app_registers_delivery_and_recovery_with_the_worker():
    from iothub.worker import registry

    assert registry.listeners[NOTIFY_CHANNEL] is tasks.deliver_notifications
    recovery = registry.periodic_tasks["recover_stalled_notifications"]
    assert recovery.run_at_start
    assert recovery.every == timedelta(minutes=1)


SECRETS = ("s3cret-token", "hook-user", "hook-pass", "T0KEN-PATH")


def secret_url(base, *, userinfo=False):
    """``base`` (http://host:port/…) with a token where webhook URLs carry one: the path, the query (and the
    userinfo, which urllib can't send: such a channel fails, and its error must not quote them either)."""
    if userinfo:
        base = base.replace("http://", "http://hook-user:hook-pass@")
    return base + "/T0KEN-PATH?token=s3cret-token#frag"


def assert_no_secret(*texts):
    for text in texts:
        assert not any(secret in text for secret in SECRETS), text


@pytest.mark.django_db
@pytest.mark.parametrize("status", [204, 503])
def test_a_webhooks_secrets_reach_the_receiver_only(settings, receiver, caplog, status):
    settings.NOTIFICATION_WEBHOOKS_ENABLED = True
    receiver.status = status
    channel = NotificationChannelFactory(kind="webhook", target=secret_url(receiver.url))
    [notification] = queue_notifications(channel)

    with caplog.at_level(logging.DEBUG):
        deliver_due_notifications()

    assert receiver.requests[0]["path"] == "/hooks/iot/T0KEN-PATH?token=s3cret-token"
    notification.refresh_from_db()
    assert notification.attempts == 1
    assert_no_secret(json.dumps(notification.request), notification.last_error, caplog.text)
    if status == 503:
        assert notification.last_error == f"POST {receiver.shown_url}: HTTP 503 Service Unavailable"
        assert f"POST {receiver.shown_url}" in caplog.text
    else:
        assert notification.request["url"] == receiver.shown_url


@pytest.mark.django_db
def test_a_webhook_recorded_but_not_sent_logs_no_secret(settings, receiver, caplog):
    channel = NotificationChannelFactory(kind="webhook", target=secret_url(receiver.url))
    [notification] = queue_notifications(channel)
    with caplog.at_level(logging.DEBUG):
        deliver_due_notifications()
    notification.refresh_from_db()
    assert f"POST {receiver.shown_url}" in caplog.text
    assert_no_secret(json.dumps(notification.request), caplog.text)


@pytest.mark.django_db
def test_an_unreachable_webhook_with_secrets_records_none(settings, closed_port, caplog):
    settings.NOTIFICATION_WEBHOOKS_ENABLED = True
    for userinfo in (False, True):
        target = secret_url(f"http://127.0.0.1:{closed_port}", userinfo=userinfo)
        channel = NotificationChannelFactory(kind="webhook", target=target)
        [notification] = queue_notifications(channel)
        with caplog.at_level(logging.DEBUG):
            deliver_due_notifications()
        notification.refresh_from_db()
        assert notification.attempts == 1
        assert notification.last_error
        assert_no_secret(notification.last_error, caplog.text)


@pytest.mark.parametrize(
    ("message", "redacted"),
    [
        # Library messages that quote the URL, whole or in parts.
        (
            "ValueError: unknown url type: 'htps://hook-user:hook-pass@hooks.example.com/T0KEN-PATH?token=s3cret-token'",
            "ValueError: unknown url type: 'htps://hooks.example.com/…'",
        ),
        (
            "InvalidURL: URL can't contain control characters. '/T0KEN-PATH?token=s3cret-token' (found at least ' ')",
            "InvalidURL: URL can't contain control characters. '/…?…' (found at least ' ')",
        ),
        (
            "POST https://hooks.example.com/T0KEN-PATH?token=s3cret-token: timed out",
            "POST https://hooks.example.com/…: timed out",
        ),
        ("auth failed for hook-user", "auth failed for …"),
    ],
)
def test_errors_are_redacted_whatever_quotes_the_url(message, redacted):
    channel = NotificationChannel(
        kind="webhook", target="https://hook-user:hook-pass@hooks.example.com/T0KEN-PATH?token=s3cret-token"
    )
    assert notifications.redact(message, channel) == redacted


def test_email_errors_mask_the_addresses():
    channel = NotificationChannel(kind="email", target="ops@example.com, oncall@example.org")
    message = "SMTPRecipientsRefused: {'oncall@example.org': (550, b'no such user')}"
    assert (
        notifications.redact(message, channel) == "SMTPRecipientsRefused: {'o***@example.org': (550, b'no such user')}"
    )


@pytest.mark.parametrize(
    ("kind", "target", "masked"),
    [
        ("webhook", "https://hooks.example.com/services/T0/B0/XyZ?token=1", "https://hooks.example.com/…"),
        ("webhook", "https://user:pw@hooks.example.com:8443", "https://hooks.example.com:8443/…"),
        ("webhook", "https://hooks.example.com/", "https://hooks.example.com"),
        ("webhook", "http://[::1]:9000/hook", "http://[::1]:9000/…"),
        ("email", "ops@example.com, b@example.org", "o***@example.com, b***@example.org"),
        ("log", "night shift", "night shift"),
    ],
)
def test_targets_as_other_roles_see_them(kind, target, masked):
    assert notifications.mask_channel_target(kind, target) == masked


@pytest.mark.django_db
def test_the_migration_redacts_notifications_stored_before(receiver):
    migration = importlib.import_module("migrations.rules.0011_notifications_without_secrets")
    channel = NotificationChannelFactory(kind="webhook", target=secret_url(receiver.url))
    [notification] = queue_notifications(channel)
    Notification.objects.filter(pk=notification.pk).update(
        request={"method": "POST", "url": channel.target, "body": {}, "sent": False},
        last_error=f"POST {channel.target}: HTTP 503 Service Unavailable",
    )
    migration.forwards(django_apps, None)
    notification.refresh_from_db()
    assert notification.request == {"method": "POST", "url": receiver.shown_url, "body": {}, "sent": False}
    assert notification.last_error == f"POST {receiver.shown_url}: HTTP 503 Service Unavailable"
