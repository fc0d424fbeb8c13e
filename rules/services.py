"""Writes of the rules app: keyword-only ``<entity>_<action>`` functions."""

from django.db import transaction
from django.db.models.functions import Now

from rules.models import NotificationStatus
from rules.notifications import notify_pending


def notification_retry(*, notifications):
    """Make failed or waiting notifications due now and wake the worker; returns how many.

    The attempt count is kept: a notification that had reached NOTIFICATION_MAX_ATTEMPTS gets exactly one more try.
    Rows being sent or already sent are left alone.
    """
    retried = notifications.filter(status__in=[NotificationStatus.FAILED, NotificationStatus.PENDING]).update(
        status=NotificationStatus.PENDING, next_attempt_at=Now(), updated_at=Now()
    )
    if retried:
        transaction.on_commit(notify_pending)
    return retried
