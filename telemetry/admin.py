import json
from datetime import timedelta

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.db.models import Count
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from rest_framework.settings import api_settings

from iothub.admin_site import ModelAdmin
from rules.admin import open_event_count, open_events_link
from rules.selectors import rules_watching
from telemetry.admin_exports import export_hourly_aggregates_csv, export_readings_csv
from telemetry.api.serializers import DeviceTypeSerializer
from telemetry.charts import CHART_WINDOWS, DEFAULT_CHART_WINDOW, device_series, duration_label, metric_chart
from telemetry.ingest.keys import ingest_key_assign, ingest_key_generate, ingest_key_hash, ingest_key_rotate
from telemetry.models import OFFLINE_AFTER_INTERVALS, Device, DeviceType, IngestKey
from telemetry.selectors import device_list, telemetry_latest


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
        fields = ["name", "description", "metrics", "strict_metrics", "expected_interval_seconds"]

    def clean_metrics(self):
        # The same rules as the API, so that a type edited here reads back the same way there.
        metrics = self.cleaned_data["metrics"]
        serializer = DeviceTypeSerializer(data={"metrics": metrics}, partial=True)
        if not serializer.is_valid():
            raise forms.ValidationError(list(_error_messages(serializer.errors["metrics"], "/metrics")))
        return serializer.validated_data["metrics"]


@admin.register(DeviceType)
class DeviceTypeAdmin(ModelAdmin):
    form = DeviceTypeForm
    list_display = ["name", "description", "strict_metrics", "expected_interval_seconds", "device_count", "created_at"]
    search_fields = ["name", "description"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(device_count=Count("devices"))

    @admin.display(description="devices", ordering="device_count")
    def device_count(self, obj):
        return obj.device_count


@admin.register(Device)
class DeviceAdmin(ModelAdmin):
    """Devices, and on a device's page what an operator looks for first: online or not, the latest value of each
    metric with its unit, a chart per metric over a chosen window (from the aggregates), its open events and the rules
    that watch it. Telemetry has a composite primary key, which Admin can't register: it is shown here read-only."""

    list_display = [
        "name",
        "serial_number",
        "status",
        "online",
        "device_type",
        "location",
        "last_seen_at",
        "open_events",
    ]
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
        "ingest_key",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["id", "created_at", "updated_at"]

    class Media:
        css = {"all": ["telemetry/admin.css"]}

    def get_queryset(self, request):
        # The type: the list's column, and the page's units and expected interval.
        return device_list().select_related("device_type").annotate(open_event_count=open_event_count("device"))

    def get_fields(self, request, obj=None):
        # Before the first save there is no id and no timestamps.
        return self.fields if obj else [name for name in self.fields if name not in self.readonly_fields]

    @admin.display(description="last seen", ordering="last_seen_at", empty_value="never")
    def last_seen_at(self, obj):
        return obj.last_seen_at

    @admin.display(description="online")
    def online(self, device):
        state, text = connectivity(device=device, now=timezone.now())
        return format_html('<span class="iothub-state iothub-state-{}" title="{}">{}</span>', state, text, state)

    @admin.display(description="open events", ordering="open_event_count")
    def open_events(self, device):
        return open_events_link(device.open_event_count, device=device.pk)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            window = CHART_WINDOWS.get(request.GET.get("window"), CHART_WINDOWS[DEFAULT_CHART_WINDOW])
            context["device_panels"] = device_panels(device=obj, window=window, now=timezone.now())
        return super().render_change_form(request, context, add, change, form_url, obj)


def connectivity(*, device, now):
    """``(state, text)``: ``state`` is "online", "offline", "never" (no reading yet) or "unknown" (its type expects no
    interval); ``text`` says why. Display only: no-data rules raise the alarms."""
    expected = device.device_type.expected_interval_seconds
    if device.last_seen_at is None:
        return "never", "No reading yet."
    age = now - device.last_seen_at
    ago = f"last reading {naturaltime(device.last_seen_at)}" if age.total_seconds() >= 1 else "last reading just now"
    if expected is None:
        return "unknown", f"{ago.capitalize()} (its type sets no expected interval, so online/offline is not shown)."
    every = f"expected every {duration_label(timedelta(seconds=expected))}"
    if age > timedelta(seconds=expected * OFFLINE_AFTER_INTERVALS):
        return "offline", f"Offline: {ago}, {every}."
    return "online", f"Online: {ago}, {every}."


def device_panels(*, device, window, now):
    """What the device's page shows above its fields: connectivity, latest values with units, charts, events and
    rules. A fixed number of queries, whatever the number of metrics, events and rules."""
    declared = {metric["name"]: metric for metric in device.device_type.metrics}
    _, latest = telemetry_latest(device=device, now=now)
    first, stop, series = device_series(device=device, window=window, now=now)
    # Declared metrics in their declared order, then the others by name.
    names = list(declared) + sorted((set(latest) | set(series)) - set(declared))
    metrics = []
    for name in names:
        unit = declared.get(name, {}).get("unit", "")
        value, time = latest.get(name, (None, None))
        metrics.append(
            {
                "name": name,
                "unit": unit,
                "description": declared.get(name, {}).get("description", ""),
                "declared": name in declared,
                "value": _value(value) if name in latest else None,
                "time": time,
                "chart": metric_chart(series=series[name], first=first, stop=stop, window=window, unit=unit)
                if name in series
                else None,
            }
        )
    state, state_text = connectivity(device=device, now=now)
    events_url = reverse("admin:rules_event_changelist")
    return {
        "state": state,
        "state_text": state_text,
        "metrics": metrics,
        "window": window,
        "windows": CHART_WINDOWS.values(),
        "charted": sum(1 for metric in metrics if metric["chart"]),
        "open_event_count": device.open_event_count,
        "open_events_url": f"{events_url}?{urlencode({'device__id__exact': device.pk})}",
        "all_events_url": f"{events_url}?{urlencode({'device__id__exact': device.pk, 'status': 'all'})}",
        "rules": [
            {
                "rule": rule,
                "condition": f"{rule.metric} {rule.get_operator_display()} {json.dumps(rule.threshold)}",
                "url": reverse("admin:rules_rule_change", args=[rule.pk]),
            }
            for rule in rules_watching(device)
        ],
    }


def _value(value):
    """A metric's value as a person reads it: JSON for objects, true/false for booleans."""
    if isinstance(value, (dict, list, bool)) or value is None:
        return json.dumps(value)
    return str(value)


class IngestKeyForm(forms.ModelForm):
    devices = forms.ModelMultipleChoiceField(
        Device.objects.all(),
        required=False,
        widget=FilteredSelectMultiple("devices", is_stacked=False),
        help_text="A device moves here from its previous key; one left out returns to open ingest.",
    )

    class Meta:
        model = IngestKey
        fields = ["name"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["devices"].initial = self.instance.devices.all()


@admin.register(IngestKey)
class IngestKeyAdmin(ModelAdmin):
    """Device keys. The key itself appears once, on the page that follows its creation or rotation (not in a
    message: messages travel in a cookie or the session); deleting a key revokes it."""

    form = IngestKeyForm
    list_display = ["name", "device_count", "created_at", "rotated_at", "refusals", "last_refused_at"]
    search_fields = ["name"]
    readonly_fields = ["created_at", "rotated_at", "refusals", "last_refused_at"]
    actions = ["rotate"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(device_count=Count("devices"))

    def get_fields(self, request, obj=None):
        return ["name", "devices", *(self.readonly_fields if obj else [])]

    @admin.display(description="devices", ordering="device_count")
    def device_count(self, obj):
        return obj.device_count

    def save_model(self, request, obj, form, change):
        if not change:
            request.ingest_key_shown = ingest_key_generate()
            obj.key_hash = ingest_key_hash(request.ingest_key_shown)
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        ingest_key_assign(ingest_key=form.instance, devices=form.cleaned_data["devices"])

    def response_add(self, request, obj, post_url_continue=None):
        return self._keys_shown(request, [(obj, request.ingest_key_shown)])

    @admin.action(description="Rotate the selected device keys (the old keys stop working)", permissions=["change"])
    def rotate(self, request, queryset):
        keys = [(ingest_key, ingest_key_rotate(ingest_key=ingest_key)) for ingest_key in queryset]
        return self._keys_shown(request, keys)

    def _keys_shown(self, request, keys):
        context = {
            **self.admin_site.each_context(request),
            "title": "Device keys",
            "opts": self.opts,
            "keys": keys,
            "back_url": reverse("admin:telemetry_ingestkey_changelist"),
        }
        response = TemplateResponse(request, "admin/telemetry/ingestkey/keys_shown.html", context)
        response.headers["Cache-Control"] = "no-store"
        return response
