"""Notification delivery: the worker claims due notifications, delivers them through their channel and records
every attempt (registered with the worker in rules/tasks.py; semantics in docs/rules.md, "Notifications").

Notification rows are an outbox the rule trigger fills in the telemetry insert's transaction::

    pending ──claim──▶ sending ──delivered──▶ sent
       ▲                  │
       └──failed: backoff─┤
                          └──failed NOTIFICATION_MAX_ATTEMPTS times, or channel disabled──▶ failed

Delivery is at least once: a worker killed between delivering and recording leaves the row ``sending``;
``recover_stalled_notifications`` puts it back in line after ``NOTIFICATION_STALLED_AFTER`` seconds, so the
receiver may see it twice.
Every time is the database's ``now()``, so workers on several hosts agree on what is due.
"""

import json
import logging
import re
import time
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import get_connection, send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator, validate_email
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Now

from rules.models import NOTIFICATION_PAYLOAD_KEYS, ChannelKind, Notification, NotificationStatus

logger = logging.getLogger("iothub.notifications")

# The channel the rule trigger NOTIFYs when it queues notifications.
NOTIFY_CHANNEL = "notifications_pending"
# Rows claimed per transaction: small, so concurrent workers share a burst.
BATCH_SIZE = 10
# A listener call stops claiming after this many seconds and NOTIFYs itself when work remains, so the worker's
# loop (and with it SIGTERM) gets a turn during a large backlog.
TIME_BUDGET = 2.0
# The wait after the n-th failed attempt: 30 s * 2^(n-1), at most an hour (30 s, 1 min, 2 min, 4 min, …).
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
# Seconds one webhook request may take (email has settings.EMAIL_TIMEOUT): a hung receiver must not hold the worker.
WEBHOOK_TIMEOUT = 5.0
WEBHOOK_HEADERS = {"Content-Type": "application/json", "User-Agent": "iothub-notifications/1"}


# Log channel: the record's level follows the event's severity.
LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class DeliveryError(Exception):
    """A failed delivery; its message becomes ``last_error``."""


def retry_delay(attempts):
    """How long to wait after the ``attempts``-th failed attempt."""
    return min(BACKOFF_BASE * 2 ** (attempts - 1), BACKOFF_CAP)


def notify_pending():
    """Wake the workers (the trigger does the same when it queues notifications)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [NOTIFY_CHANNEL])


def claim_due_notifications(*, limit=BATCH_SIZE):
    """Mark up to ``limit`` due notifications ``sending`` and return them, oldest first.

    SKIP LOCKED lets concurrent workers take different rows without waiting; the claim commits before any
    delivery starts, so no lock is held while talking to the outside world.
    """
    due = Q(status=NotificationStatus.PENDING, next_attempt_at__lte=Now())
    with transaction.atomic():
        ids = list(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(due)
            .order_by("next_attempt_at", "id")
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        Notification.objects.filter(id__in=ids).update(
            status=NotificationStatus.SENDING, claimed_at=Now(), updated_at=Now()
        )
        return list(
            Notification.objects.filter(id__in=ids)
            .select_related("channel", "event__device")
            .order_by("next_attempt_at", "id")
        )


def _claimed(notification):
    """The row, if this worker's claim on it still holds: ``claimed_at`` fences out a claim that recovery
    released and another worker took since."""
    return Notification.objects.filter(
        pk=notification.pk, status=NotificationStatus.SENDING, claimed_at=notification.claimed_at
    )


def deliver_due_notifications(*, batch_size=BATCH_SIZE, time_budget=TIME_BUDGET):
    """Claim and deliver due notifications until none is due or ``time_budget`` seconds have passed; returns how
    many were attempted. Idempotent: the worker calls it on NOTIFY, at start and on every poll."""
    deadline = time.monotonic() + time_budget
    attempted = 0
    while time.monotonic() < deadline:
        batch = claim_due_notifications(limit=batch_size)
        if not batch:
            return attempted
        try:
            while batch and time.monotonic() < deadline:
                deliver_notification(batch.pop(0))
                attempted += 1
        finally:
            # Out of time, or interrupted: hand back what this worker claimed but never tried.
            release_claims(batch)
    notify_pending()
    return attempted


def release_claims(notifications):
    """Put claimed, unattempted notifications back to ``pending`` without counting an attempt."""
    for notification in notifications:
        _claimed(notification).update(status=NotificationStatus.PENDING, claimed_at=None, updated_at=Now())


def deliver_notification(notification):
    """Deliver one claimed notification through its channel and record the outcome."""
    channel = notification.channel
    if not channel.enabled:
        # The admin switched the channel off after the event was queued: don't deliver, don't retry by itself.
        _claimed(notification).update(
            status=NotificationStatus.FAILED,
            last_error="The channel is disabled; not delivered.",
            claimed_at=None,
            updated_at=Now(),
        )
        logger.info("Notification %s not delivered: channel %s is disabled", notification.pk, channel.name)
        return
    try:
        request = DELIVERERS[channel.kind](notification)
    except Exception as error:
        _record_failure(notification, _describe_error(error, channel))
    else:
        _claimed(notification).update(
            status=NotificationStatus.SENT,
            attempts=notification.attempts + 1,
            sent_at=Now(),
            last_error="",
            request=request,
            claimed_at=None,
            updated_at=Now(),
        )


def _record_failure(notification, error):
    attempts = notification.attempts + 1
    if attempts >= settings.NOTIFICATION_MAX_ATTEMPTS:
        status, next_attempt_at = NotificationStatus.FAILED, notification.next_attempt_at
        logger.error("Notification %s failed for good after %d attempts: %s", notification.pk, attempts, error)
    else:
        status, next_attempt_at = NotificationStatus.PENDING, Now() + retry_delay(attempts)
        logger.warning(
            "Notification %s attempt %d failed, retrying in %s: %s",
            notification.pk,
            attempts,
            retry_delay(attempts),
            error,
        )
    _claimed(notification).update(
        status=status,
        attempts=attempts,
        last_error=error,
        next_attempt_at=next_attempt_at,
        claimed_at=None,
        updated_at=Now(),
    )


def _describe_error(error, channel):
    # Exceptions of HTTP and mail libraries often quote the URL or the addresses.
    if isinstance(error, DeliveryError):
        return redact(str(error), channel)
    return redact(f"{type(error).__name__}: {error}", channel)[:1000]


def recover_stalled_notifications(*, stalled_after=None):
    """Rows a dead worker left ``sending`` for longer than ``stalled_after`` (default: the setting
    ``NOTIFICATION_STALLED_AFTER``, in seconds) go back to ``pending`` (due at once), counting the interrupted
    attempt, or to ``failed`` if that was the last one allowed. Returns how many rows were recovered."""
    if stalled_after is None:
        stalled_after = timedelta(seconds=settings.NOTIFICATION_STALLED_AFTER)
    stalled = Q(status=NotificationStatus.SENDING) & (
        Q(claimed_at__isnull=True) | Q(claimed_at__lt=Now() - stalled_after)
    )
    error = f"Interrupted: still sending after {stalled_after}; the worker probably died mid-delivery."
    recovered = 0
    with transaction.atomic():
        for notification in Notification.objects.select_for_update(skip_locked=True).filter(stalled):
            attempts = notification.attempts + 1
            failed = attempts >= settings.NOTIFICATION_MAX_ATTEMPTS
            Notification.objects.filter(pk=notification.pk).update(
                status=NotificationStatus.FAILED if failed else NotificationStatus.PENDING,
                attempts=attempts,
                last_error=error,
                next_attempt_at=notification.next_attempt_at if failed else Now(),
                claimed_at=None,
                updated_at=Now(),
            )
            recovered += 1
    if recovered:
        logger.warning("Recovered %d notification(s) left sending by a stopped worker", recovered)
        notify_pending()
    return recovered


def _content(notification):
    """The event as delivered: the payload the trigger froze when it queued the notification; the event row fills
    in for a notification queued without one (by hand), and only then is the event (and its device) read."""
    payload = notification.payload
    if all(key in payload for key in NOTIFICATION_PAYLOAD_KEYS):
        return {key: payload[key] for key in NOTIFICATION_PAYLOAD_KEYS}
    event = notification.event
    from_event = {
        "event_id": event.pk,
        "rule_id": event.rule_id,
        "rule_name": event.rule_name,
        "device_id": str(event.device_id),
        "device_name": event.device.name,
        "severity": event.severity,
        "message": event.message,
        "triggered_at": event.triggered_at,
        "trigger_values": event.trigger_values,
    }
    return {key: payload.get(key, from_event[key]) for key in NOTIFICATION_PAYLOAD_KEYS}


def deliver_to_log(notification):
    content = _content(notification)
    label = notification.channel.target or notification.channel.name
    logger.log(
        LOG_LEVELS.get(content["severity"], logging.WARNING),
        "[%s] %s event %s: %s (rule %s, device %s %s)",
        label,
        content["severity"].upper(),
        content["event_id"],
        content["message"],
        content["rule_name"],
        content["device_name"],
        content["device_id"],
    )
    return None


# Secrets: a webhook URL carries its token in the query (?token=…), the userinfo (https://user:pass@…) or the path
# (Slack's /services/T…/B…/<secret>), so only its scheme, host and port are ever logged, stored in a notification
# or shown to a role other than admin (docs/rules.md, "Who sees a channel's target").
URL_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
REDACTED = "…"


def redact_url(url):
    """``https://hooks.example.com/…``: the URL's scheme, host and port; "/…" stands for whatever followed."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return REDACTED
    if ":" in host:
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    rest = parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password
    return f"{origin}/{REDACTED}" if rest else origin


def mask_email(address):
    """``o***@example.com``: enough for a person to recognise the mailbox, not to write to it."""
    local, at, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}" if at and local else "***"


def mask_channel_target(kind, target):
    """A channel's target as roles other than admin see it. A log channel's target is a label, shown as is."""
    if kind == ChannelKind.WEBHOOK:
        return redact_url(target)
    if kind == ChannelKind.EMAIL:
        return ", ".join(mask_email(address) for address in email_recipients(target))
    return target


def redact(text, channel):
    """``text`` (an error, a log line) without the channel's secrets: every URL redacted, and the secret parts of
    the channel's own webhook URL or its addresses wherever they appear on their own."""

    def redact_match(match):
        url = match.group(0)
        trailing = url[len(url.rstrip(".,:;")) :]
        return redact_url(url.rstrip(".,:;")) + trailing

    text = URL_PATTERN.sub(redact_match, text)
    if channel.kind == ChannelKind.WEBHOOK:
        try:
            parts = urlsplit(channel.target)
            secrets = [parts.query, parts.fragment, parts.password or "", parts.username or "", parts.path.strip("/")]
        except ValueError:
            secrets = []
        # Short parts ("/in", "bob") are no secret worth turning every match in a message into "…".
        for secret in sorted((part for part in secrets if len(part) >= 6), key=len, reverse=True):
            text = text.replace(secret, REDACTED)
    elif channel.kind == ChannelKind.EMAIL:
        for address in email_recipients(channel.target):
            text = text.replace(address, mask_email(address))
    return text


def email_recipients(target):
    """The addresses of an email channel's target: one or several, separated by commas."""
    return [address.strip() for address in target.split(",") if address.strip()]


def clean_channel_target(kind, target):
    """A channel's target checked for its kind and normalised; raises ValidationError with a message for an admin.

    email: one or more addresses separated by commas; webhook: an http(s) URL; log: free text (a label in the log).
    """
    target = target.strip()
    if kind == ChannelKind.EMAIL:
        addresses = email_recipients(target)
        if not addresses:
            raise ValidationError("Give at least one email address (several: separated by commas).", code="required")
        invalid = [address for address in addresses if not _is_email(address)]
        if invalid:
            raise ValidationError(f"Not a valid email address: {', '.join(invalid)}.", code="invalid")
        return ", ".join(addresses)
    if kind == ChannelKind.WEBHOOK:
        if not target:
            raise ValidationError("Give the URL the webhook posts to.", code="required")
        URLValidator(schemes=["http", "https"], message="Enter an http:// or https:// URL.")(target)
    return target


def _is_email(address):
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


def deliver_by_email(notification):
    content = _content(notification)
    subject = f"[IoT Hub] {content['severity']}: {content['rule_name']}"
    body = "\n".join(
        [
            content["message"],
            "",
            f"Rule: {content['rule_name']}",
            f"Device: {content['device_name']} ({content['device_id']})",
            f"Severity: {content['severity']}",
            f"Triggered at: {content['triggered_at']}",
            f"Values: {json.dumps(content['trigger_values'], cls=DjangoJSONEncoder)}",
            f"Event: {content['event_id']}",
        ]
    )
    mail_connection = get_connection(timeout=settings.EMAIL_TIMEOUT)
    recipients = email_recipients(notification.channel.target)
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, connection=mail_connection)
    return None


def webhook_request(notification):
    """The request a webhook notification sends: ``(url, headers, body bytes)``."""
    body = {"notification_id": notification.pk, "event": _content(notification)}
    data = json.dumps(body, cls=DjangoJSONEncoder).encode()
    return notification.channel.target, WEBHOOK_HEADERS, data


def deliver_by_webhook(notification):
    """POSTs the event, or only records the request while NOTIFICATION_WEBHOOKS_ENABLED is off; returns the
    request for ``Notification.request``."""
    url, headers, data = webhook_request(notification)
    # What is logged and stored names the receiver, never the URL's secret part (every role reads `request`).
    shown_url = redact_url(url)
    recorded = {
        "method": "POST",
        "url": shown_url,
        "body": json.loads(data),
        "sent": settings.NOTIFICATION_WEBHOOKS_ENABLED,
    }
    if not settings.NOTIFICATION_WEBHOOKS_ENABLED:
        logger.info("Webhook not sent (NOTIFICATION_WEBHOOKS_ENABLED is off): POST %s %s", shown_url, data.decode())
        return recorded
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        raise DeliveryError(f"POST {shown_url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise DeliveryError(f"POST {shown_url}: {getattr(error, 'reason', error)}") from error
    if not 200 <= status < 300:
        raise DeliveryError(f"POST {shown_url}: HTTP {status}")
    return recorded


DELIVERERS = {
    ChannelKind.LOG: deliver_to_log,
    ChannelKind.EMAIL: deliver_by_email,
    ChannelKind.WEBHOOK: deliver_by_webhook,
}
