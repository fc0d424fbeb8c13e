"""The Admin action exporting events as CSV: the API's export (iothub/api/exports.py) of the selected events.
Kept apart from rules/admin.py, which lists it in EventAdmin.actions."""

from django.contrib import admin

from iothub.api.exports import csv_response
from rules.selectors import event_export


@admin.action(description="Export the selected events as CSV", permissions=["view"])
def export_events_csv(modeladmin, request, queryset):
    return csv_response(event_export(queryset.order_by("-triggered_at", "-id")), filename="events.csv")
