"""Reads of the rules app."""

import json
from datetime import datetime

from django.db.models import Q

from iothub.api.exports import CHUNK_ROWS, EXPORT_DATABASE
from iothub.api.formats import utc_iso
from rules.models import Event, Rule


def rule_list():
    return Rule.objects.select_related("device", "device_type").prefetch_related("channels")


def event_list():
    """Events newest first, with what a list shows of their rule, device and the people who acted."""
    return Event.objects.select_related("device", "acknowledged_by", "resolved_by").order_by("-triggered_at", "-id")


def rules_watching(device):
    """The rules evaluated on the device's readings: its own, its type's and those for every device."""
    return Rule.objects.filter(
        Q(device=device) | Q(device_type=device.device_type_id) | Q(device__isnull=True, device_type__isnull=True)
    ).order_by("name")


# The CSV export of events: (column, field of Event.objects.values_list).
EVENT_EXPORT_COLUMNS = (
    ("id", "id"),
    ("triggered_at", "triggered_at"),
    ("last_triggered_at", "last_triggered_at"),
    ("status", "status"),
    ("severity", "severity"),
    ("rule", "rule_id"),
    ("rule_name", "rule_name"),
    ("device", "device_id"),
    ("device_name", "device__name"),
    ("metric", "trigger_values__metric"),
    ("operator", "trigger_values__operator"),
    ("threshold", "trigger_values__threshold"),
    ("value", "trigger_values__value"),
    ("last_value", "last_values__value"),
    ("occurrence_count", "occurrence_count"),
    ("message", "message"),
    ("acknowledged_at", "acknowledged_at"),
    ("acknowledged_by", "acknowledged_by__username"),
    ("acknowledged_note", "acknowledged_note"),
    ("resolved_at", "resolved_at"),
    ("resolved_by", "resolved_by__username"),
    ("resolved_note", "resolved_note"),
)


def _event_cell(value):
    """Times in UTC with Z; JSON values (threshold, value) as JSON text, strings bare; None an empty cell."""
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, (bool, dict, list)):
        return json.dumps(value)
    return value


def event_export(events):
    """``produce(connection)`` for iothub.api.exports.csv_response: the ``events`` queryset (filtered and ordered
    as the caller asked), one row each, read through a server-side cursor."""

    def produce(connection):
        fields = [field for _, field in EVENT_EXPORT_COLUMNS]
        rows = events.using(EXPORT_DATABASE).values_list(*fields).iterator(chunk_size=CHUNK_ROWS)
        return [column for column, _ in EVENT_EXPORT_COLUMNS], ([_event_cell(v) for v in row] for row in rows)

    return produce
