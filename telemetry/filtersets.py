"""Query-parameter filters of the telemetry API (django-filter); invalid values are 400 problems per parameter."""

import django_filters
from django.db.models import F

from telemetry.models import Device, DeviceStatus, DeviceType


class DeviceOrderingFilter(django_filters.OrderingFilter):
    """``?ordering=-last_seen_at``: never-seen devices come last either way, and the unique serial number breaks
    ties so that pages neither overlap nor skip devices. An unknown field is a 400, not silently ignored."""

    def get_ordering_value(self, param):
        descending = param.startswith("-")
        field = F(self.param_map[param.removeprefix("-")])
        return field.desc(nulls_last=True) if descending else field.asc(nulls_last=True)

    def filter(self, qs, value):
        params = [param for param in value or () if param]  # "?ordering=,name,": empty entries name nothing
        if not params:
            return qs
        return qs.order_by(*(self.get_ordering_value(param) for param in params), "serial_number")


class DeviceFilterSet(django_filters.FilterSet):
    # ?status=active&status=maintenance
    status = django_filters.MultipleChoiceFilter(choices=DeviceStatus.choices)
    device_type = django_filters.ModelChoiceFilter(queryset=DeviceType.objects.all())
    ordering = DeviceOrderingFilter(fields=["name", "serial_number", "created_at", "last_seen_at"])

    class Meta:
        model = Device
        fields = ["status", "device_type"]
