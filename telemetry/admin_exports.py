"""Admin actions exporting a device's readings and hourly aggregates as CSV: the API's exports
(iothub/api/exports.py), over everything the raw retention keeps. Kept apart from telemetry/admin.py, which lists
them in DeviceAdmin.actions."""

from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.utils import timezone

from iothub.api.exports import csv_response
from telemetry.selectors import telemetry_aggregate_export, telemetry_export


def _retained_window():
    now = timezone.now()
    return now - timedelta(days=settings.TELEMETRY_RETENTION_DAYS), now + timedelta(minutes=5)


def _one_device(modeladmin, request, queryset):
    devices = list(queryset[:2])
    if len(devices) != 1:
        modeladmin.message_user(request, "Select exactly one device to export.", messages.WARNING)
        return None
    return devices[0]


@admin.action(description="Export the device's readings as CSV (everything retained)", permissions=["view"])
def export_readings_csv(modeladmin, request, queryset):
    device = _one_device(modeladmin, request, queryset)
    if device is None:
        return None
    start, end = _retained_window()
    export = telemetry_export(device=device, start=start, end=end, ascending=True)
    return csv_response(export, filename=f"readings-{device.pk}.csv")


@admin.action(description="Export the device's hourly aggregates as CSV (everything retained)", permissions=["view"])
def export_hourly_aggregates_csv(modeladmin, request, queryset):
    device = _one_device(modeladmin, request, queryset)
    if device is None:
        return None
    start, end = _retained_window()
    export = telemetry_aggregate_export(device=device, start=start, end=end, interval=timedelta(hours=1))
    return csv_response(export, filename=f"aggregates-1h-{device.pk}.csv")
