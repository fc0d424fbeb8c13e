import json

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html, format_html_join
from rest_framework.settings import api_settings

from telemetry.admin_exports import export_hourly_aggregates_csv, export_readings_csv
from telemetry.api.serializers import DeviceTypeSerializer
from telemetry.models import Device, DeviceType, Telemetry
from telemetry.selectors import device_list

RECENT_READINGS = 20


def _error_messages(detail, pointer):
    """DRF's nested errors as "<JSON pointer>: <message>" lines."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            yield from _error_messages(
                value, pointer if key == api_settings.NON_FIELD_ERRORS_KEY else f"{pointer}/{key}"
            )
    elif isinstance(detail, list) and any(isinstance(item, (dict, list)) for item in detail):
        for index, value in enumerate(detail):
            yield from _error_messages(value, f"{pointer}/{index}")
    else:
        for message in detail if isinstance(detail, list) else [detail]:
            yield f"{pointer}: {message}"


class DeviceTypeForm(forms.ModelForm):
    class Meta:
        model = DeviceType
        fields = ["name", "description", "metrics"]

    def clean_metrics(self):
        # The same rules as the API, so that a type edited here reads back the same way there.
        metrics = self.cleaned_data["metrics"]
        serializer = DeviceTypeSerializer(data={"metrics": metrics}, partial=True)
        if not serializer.is_valid():
            raise forms.ValidationError(list(_error_messages(serializer.errors["metrics"], "/metrics")))
        return serializer.validated_data["metrics"]


@admin.register(DeviceType)
class DeviceTypeAdmin(admin.ModelAdmin):
    form = DeviceTypeForm
    list_display = ["name", "description", "device_count", "created_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(device_count=Count("devices"))

    @admin.display(description="devices", ordering="device_count")
    def device_count(self, obj):
        return obj.device_count


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["name", "serial_number", "status", "device_type", "location", "last_seen_at"]
    list_filter = ["status", "device_type"]
    list_select_related = ["device_type"]
    search_fields = ["name", "serial_number"]
    actions = [export_readings_csv, export_hourly_aggregates_csv]
    fields = [
        "id",
        "name",
        "serial_number",
        "location",
        "status",
        "device_type",
        "metadata",
        "created_at",
        "updated_at",
        "last_seen_at",
        "recent_readings",
    ]
    readonly_fields = ["id", "created_at", "updated_at", "last_seen_at", "recent_readings"]

    def get_queryset(self, request):
        return device_list()

    def get_fields(self, request, obj=None):
        # Before the first save there is no id, no timestamps and no telemetry to show.
        return self.fields if obj else [name for name in self.fields if name not in self.readonly_fields]

    @admin.display(description="last seen", ordering="last_seen_at", empty_value="never")
    def last_seen_at(self, obj):
        return obj.last_seen_at

    @admin.display(description=f"{RECENT_READINGS} most recent readings")
    def recent_readings(self, obj):
        # Telemetry has a composite primary key, which admin can't register: it is shown here read-only.
        readings = Telemetry.objects.filter(device_id=obj.pk).order_by("-time")[:RECENT_READINGS]
        rows = format_html_join(
            "\n",
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            (
                (reading.time.isoformat(), json.dumps(reading.metrics), reading.received_at.isoformat())
                for reading in readings
            ),
        )
        if not rows:
            return "No readings."
        return format_html(
            "<table><thead><tr><th>time</th><th>metrics</th><th>received at</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )
