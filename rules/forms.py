"""The rule form of Django Admin: plain inputs for what the API takes as JSON, the fields of the chosen kind."""

import json
import math

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from rules.models import Rule, RuleKind
from telemetry.models import DeviceType


class ThresholdType:
    NUMBER = "number"
    BOOLEAN = "boolean"
    STRING = "string"
    CHOICES = [
        (NUMBER, "a number (gt, lt, gte, lte, eq, neq)"),
        (BOOLEAN, "true or false (eq, neq)"),
        (STRING, "a string (eq, neq)"),
    ]


def threshold_type_of(value):
    if isinstance(value, bool):
        return ThresholdType.BOOLEAN
    if isinstance(value, str):
        return ThresholdType.STRING
    return ThresholdType.NUMBER


def threshold_text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def number_or_none(value):
    """A JSON number from a form's float: 75.0 is stored as 75."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


class DeclaredMetricInput(forms.TextInput):
    """A text input offering the metrics the device types declare (a datalist; the form's script narrows it to the
    chosen device type). Any name may be typed: Rule.clean() decides."""

    def __init__(self, attrs=None):
        super().__init__({"list": "declared-metrics", "autocomplete": "off", **(attrs or {})})

    def render(self, name, value, attrs=None, renderer=None):
        options = format_html_join(
            "",
            '<option value="{}" data-device-type="{}">{}</option>',
            (
                (metric["name"], device_type.pk, declared_metric_label(device_type, metric))
                for device_type in DeviceType.objects.order_by("name")
                for metric in device_type.metrics
                if isinstance(metric, dict) and metric.get("name")
            ),
        )
        return format_html(
            '{}<datalist id="declared-metrics">{}</datalist>', super().render(name, value, attrs, renderer), options
        )


def declared_metric_label(device_type, metric):
    unit = f", {metric['unit']}" if metric.get("unit") else ""
    return f"{device_type.name}{unit}"


class RuleAdminForm(forms.ModelForm):
    """The rule form in plain inputs: the threshold typed as a number, true/false or a string, the metric offered
    from the declared ones, the clear threshold a number. Rule.clean() checks the whole (same messages as the API)."""

    threshold_type = forms.ChoiceField(
        choices=ThresholdType.CHOICES,
        initial=ThresholdType.NUMBER,
        label="Threshold is",
        help_text="Numbers compare numerically (21 = 21.0); true/false and strings compare exactly, with eq or neq.",
    )
    threshold = forms.CharField(
        required=False,
        label="Threshold",
        help_text="Threshold rules: the value compared with the metric, e.g. 30, 21.5, true or open (no quotes).",
    )
    clear_threshold = forms.FloatField(
        required=False,
        label="Clear threshold",
        help_text=Rule._meta.get_field("clear_threshold").help_text,
    )

    class Meta:
        model = Rule
        fields = [
            "name",
            "description",
            "enabled",
            "kind",
            "device_type",
            "device",
            "metric",
            "operator",
            "threshold",
            "no_data_seconds",
            "severity",
            "message_template",
            "dedupe",
            "auto_resolve",
            "clear_threshold",
            "for_seconds",
            "max_gap_seconds",
        ]
        widgets = {"kind": forms.RadioSelect, "metric": DeclaredMetricInput}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.threshold is not None:
            self.initial["threshold_type"] = threshold_type_of(self.instance.threshold)
            self.initial["threshold"] = threshold_text(self.instance.threshold)
        if "metric" in self.fields:
            self.fields["metric"].help_text = (
                "For a device or device type: one its type declares (suggested as you type). For every device: any "
                "metric. A no-data rule may leave it empty to watch any reading."
            )

    def clean_threshold(self):
        text = self.cleaned_data.get("threshold", "")
        kind = self.data.get(self.add_prefix("kind"), RuleKind.THRESHOLD)
        if kind == RuleKind.NO_DATA or text == "":
            return None
        kind_of_threshold = self.cleaned_data.get("threshold_type", ThresholdType.NUMBER)
        if kind_of_threshold == ThresholdType.BOOLEAN:
            if text.strip().lower() not in ("true", "false"):
                raise ValidationError("A true/false threshold is true or false.")
            return text.strip().lower() == "true"
        if kind_of_threshold == ThresholdType.STRING:
            return text
        try:
            number = json.loads(text.strip())
        except ValueError:
            number = None
        if not isinstance(number, (int, float)) or isinstance(number, bool) or not math.isfinite(number):
            raise ValidationError("Enter a number, like 30 or 21.5 (or choose true/false or a string above).")
        return number

    def clean_clear_threshold(self):
        return number_or_none(self.cleaned_data.get("clear_threshold"))

    def clean_metric(self):
        # An empty input is "no metric" (NULL), not "".
        return self.cleaned_data.get("metric") or None

    def clean_operator(self):
        return self.cleaned_data.get("operator") or None


# Which form rows each kind shows (the change form's script hides the others; the server checks them anyway).
THRESHOLD_ROWS = [
    "operator",
    "threshold_type",
    "threshold",
    "auto_resolve",
    "clear_threshold",
    "for_seconds",
    "max_gap_seconds",
]
NO_DATA_ROWS = ["no_data_seconds"]
