"""The rules app's worker tasks (see iothub.worker): notification delivery and recovery."""

from datetime import timedelta

from iothub.worker import on_notify, periodic
from rules import notifications


@on_notify(notifications.NOTIFY_CHANNEL)
def deliver_notifications():
    notifications.deliver_due_notifications()


@periodic("recover_stalled_notifications", every=timedelta(minutes=1), run_at_start=True)
def recover_stalled_notifications():
    notifications.recover_stalled_notifications()
