"""The rules app's worker tasks (see iothub.worker): notification delivery and recovery, no-data rules."""

import logging
from datetime import timedelta

from django.conf import settings

from iothub.worker import on_notify, periodic
from rules import notifications, services

logger = logging.getLogger(__name__)


@on_notify(notifications.NOTIFY_CHANNEL)
def deliver_notifications():
    notifications.deliver_due_notifications()


@periodic("recover_stalled_notifications", every=timedelta(minutes=1), run_at_start=True)
def recover_stalled_notifications():
    notifications.recover_stalled_notifications()


@periodic("evaluate_no_data_rules", every=timedelta(seconds=settings.NO_DATA_EVALUATION_SECONDS), run_at_start=True)
def evaluate_no_data_rules():
    """Opens the events of new silences and ends the silences the rule trigger could not see (docs/rules.md)."""
    result = services.no_data_rules_evaluate()
    if result.events_opened or result.silences_ended:
        logger.info(
            "No-data rules: %d event(s) opened, %d silence(s) ended", result.events_opened, result.silences_ended
        )
