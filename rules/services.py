"""Writes of the rules app: keyword-only ``<entity>_<action>`` functions."""

from typing import NamedTuple

from django.db import connection, transaction
from django.db.models.functions import Now

from rules.models import EVENT_TRANSITIONS, Event, EventStatus, NotificationStatus
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


class InvalidEventTransition(Exception):
    """The event is not in a status the requested transition starts from (the API answers 409)."""

    def __init__(self, event, action):
        self.event = event
        super().__init__(f"The event is {event.status}: it can't be {action}.")


def event_acknowledge(*, event, user, note=""):
    """open → acknowledged. A conditional UPDATE, so of two concurrent transitions exactly one wins."""
    return _event_transition(
        event=event,
        action="acknowledged",
        status=EventStatus.ACKNOWLEDGED,
        acknowledged_at=Now(),
        acknowledged_by=user,
        acknowledged_note=note,
    )


def event_resolve(*, event, user, note=""):
    """open or acknowledged → resolved. A later breach then opens a new event."""
    return _event_transition(
        event=event,
        action="resolved",
        status=EventStatus.RESOLVED,
        resolved_at=Now(),
        resolved_by=user,
        resolved_note=note,
    )


def _event_transition(*, event, action, status, **changes):
    from_statuses = [source for source, targets in EVENT_TRANSITIONS.items() if status in targets]
    updated = Event.objects.filter(pk=event.pk, status__in=from_statuses).update(status=status, **changes)
    event.refresh_from_db()
    if not updated:
        raise InvalidEventTransition(event, action)
    return event


class NoDataEvaluation(NamedTuple):
    events_opened: int
    silences_ended: int


def no_data_rules_evaluate(*, at=None):
    """One evaluation of the no-data rules as of ``at`` (default: the database's now()), in its own transaction.

    The work is the SQL function ``rules_evaluate_no_data()`` (a DBA can call it too); this only calls it.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        if at is None:
            cursor.execute("SELECT events_opened, silences_ended FROM rules_evaluate_no_data()")
        else:
            cursor.execute("SELECT events_opened, silences_ended FROM rules_evaluate_no_data(%s)", [at])
        return NoDataEvaluation(*cursor.fetchone())
