"""Query-parameter filters of the rules API (django-filter); invalid values are 400 problems per parameter."""

import django_filters

from rules.models import (
    Event,
    EventStatus,
    Notification,
    NotificationChannel,
    NotificationStatus,
    Operator,
    Rule,
    RuleKind,
    Severity,
)
from telemetry.models import Device, DeviceType


class RuleFilterSet(django_filters.FilterSet):
    kind = django_filters.MultipleChoiceFilter(choices=RuleKind.choices)
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)
    operator = django_filters.MultipleChoiceFilter(choices=Operator.choices)
    device = django_filters.ModelChoiceFilter(queryset=Device.objects.all())
    device_type = django_filters.ModelChoiceFilter(queryset=DeviceType.objects.all())

    class Meta:
        model = Rule
        fields = [
            "kind",
            "enabled",
            "severity",
            "operator",
            "metric",
            "device",
            "device_type",
            "dedupe",
            "auto_resolve",
        ]


class EventFilterSet(django_filters.FilterSet):
    # ?status=open&status=acknowledged
    status = django_filters.MultipleChoiceFilter(choices=EventStatus.choices)
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)
    device = django_filters.ModelChoiceFilter(queryset=Device.objects.all())
    rule = django_filters.ModelChoiceFilter(queryset=Rule.objects.all())
    # [start, end) on triggered_at, ISO 8601.
    start = django_filters.IsoDateTimeFilter(field_name="triggered_at", lookup_expr="gte")
    end = django_filters.IsoDateTimeFilter(field_name="triggered_at", lookup_expr="lt")

    class Meta:
        model = Event
        fields = ["status", "severity", "device", "rule", "start", "end"]


class NotificationFilterSet(django_filters.FilterSet):
    # ?status=pending&status=failed
    status = django_filters.MultipleChoiceFilter(choices=NotificationStatus.choices)
    event = django_filters.ModelChoiceFilter(queryset=Event.objects.all())
    channel = django_filters.ModelChoiceFilter(queryset=NotificationChannel.objects.all())

    class Meta:
        model = Notification
        fields = ["event", "status", "channel"]
