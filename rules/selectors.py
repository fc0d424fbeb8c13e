"""Reads of the rules app."""

from django.db.models import Q

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
