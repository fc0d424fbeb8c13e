"""Reads of the rules app."""

from rules.models import Event, Rule


def rule_list():
    return Rule.objects.select_related("device", "device_type").prefetch_related("channels")


def event_list():
    """Events newest first, with what a list shows of their rule, device and the people who acted."""
    return Event.objects.select_related("device", "acknowledged_by", "resolved_by").order_by("-triggered_at", "-id")
