"""API serializers of the telemetry app."""

import re
from datetime import datetime, timedelta
from typing import NamedTuple

from rest_framework import serializers
from rest_framework.fields import empty

from iothub.api.formats import UTC_TIME, utc_iso
from iothub.api.serializers import StrictFieldsMixin, StrictModelSerializer
from telemetry.buckets import aggregate_buckets
from telemetry.models import METRIC_NAME_REGEX, STRICT_WITHOUT_METRICS, Device, DeviceType, IngestKey


class RequiredEvenInPatch(serializers.RegexField):
    """A required field that stays required in a PATCH: DRF lets a partial update leave out required fields at every
    nesting level, but a declared metric is replaced whole, so it can't be left without a name."""

    def validate_empty_values(self, data):
        if data is empty:
            self.fail("required")
        return super().validate_empty_values(data)


class DeclaredMetricSerializer(StrictFieldsMixin, serializers.Serializer):
    name = RequiredEvenInPatch(METRIC_NAME_REGEX, trim_whitespace=False)
    unit = serializers.CharField(required=False, allow_blank=True, max_length=32)
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)


class DeviceTypeSerializer(StrictModelSerializer):
    # What devices of this type send; ingest accepts other metrics too unless strict_metrics is set.
    metrics = DeclaredMetricSerializer(many=True, required=False)

    class Meta:
        model = DeviceType
        fields = [
            "id",
            "name",
            "description",
            "metrics",
            "strict_metrics",
            "expected_interval_seconds",
            "created_at",
            "updated_at",
        ]

    def validate(self, attrs):
        # The constraint device_types_strict_metrics_declared, as a problem pointing at the field this request sets.
        strict = attrs.get("strict_metrics", getattr(self.instance, "strict_metrics", False))
        metrics = attrs.get("metrics", getattr(self.instance, "metrics", []))
        if strict and not metrics:
            field = "metrics" if "metrics" in attrs else "strict_metrics"
            raise serializers.ValidationError({field: [STRICT_WITHOUT_METRICS]}, code="strict_without_metrics")
        return attrs

    def validate_metrics(self, metrics):
        seen = set()
        errors = []
        for metric in metrics:
            duplicate = metric["name"] in seen
            seen.add(metric["name"])
            errors.append({"name": ["Another metric has this name."]} if duplicate else {})
        if any(errors):
            raise serializers.ValidationError(errors, code="unique")  # pointers /metrics/<index>/name
        return [dict(metric) for metric in metrics]


class DeviceSerializer(StrictModelSerializer):
    last_seen_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Time of the newest reading, or null."
    )

    class Meta:
        model = Device
        fields = [
            "id",
            "name",
            "serial_number",
            "location",
            "status",
            "device_type",
            "metadata",
            "status_changed_at",
            "created_at",
            "updated_at",
            "last_seen_at",
        ]

    def validate_metadata(self, metadata):
        if not isinstance(metadata, dict):
            raise serializers.ValidationError("Must be a JSON object.", code="not_an_object")
        if _contains_nul(metadata):  # jsonb can't store it: a database error otherwise
            raise serializers.ValidationError("Keys and strings may not contain U+0000.", code="null_characters")
        return metadata


class IngestKeySerializer(StrictModelSerializer):
    """A device key's record: never the key, which only its holder has (it is shown once, see
    IngestKeySecretSerializer), nor its hash."""

    devices = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=Device.objects.all(),
        required=False,
        help_text="The devices that only accept readings carrying this key. A device moves here from its previous "
        "key; one left out returns to open ingest.",
    )

    class Meta:
        model = IngestKey
        fields = ["id", "name", "devices", "created_at", "rotated_at", "refusals", "last_refused_at"]
        extra_kwargs = {
            "refusals": {"help_text": "Ingest requests refused (401) because they lacked this key for its devices."}
        }


class IngestKeySecretSerializer(IngestKeySerializer):
    """The answer of a creation or a rotation: the record and the key itself, shown this once."""

    key = serializers.CharField(
        read_only=True,
        help_text="The device key, shown only in this response: send it as `Authorization: Device <key>`.",
    )

    class Meta(IngestKeySerializer.Meta):
        fields = [*IngestKeySerializer.Meta.fields, "key"]


def _contains_nul(value):
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(key) or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


# Telemetry queries: query parameters in, readings and buckets out.

INTERVAL = re.compile(r"([1-9][0-9]{0,5})([smhd])")
INTERVAL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_METRICS_PER_QUERY = 100  # as many as a reading may hold
MAX_BUCKETS = 10_000
DEFAULT_RANGE = timedelta(hours=24)


class UtcTimeParameter(serializers.Field):
    default_error_messages = {
        "invalid": "Must be an RFC 3339 UTC time ending in Z or +00:00 (%2B00:00 in a URL), "
        "with at most 6 fractional digits.",
        "date": "Not a valid date and time.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str) or not UTC_TIME.fullmatch(data):
            self.fail("invalid")
        try:
            return datetime.fromisoformat(data)
        except ValueError:  # the shape is right but the date is not: 2026-02-30, 24:00:00
            self.fail("date")


class MetricNamesParameter(serializers.Field):
    """``a,b``: metric keys, not paths (``a.b`` is one key). Names no reading could hold are refused."""

    default_error_messages = {
        "invalid": "Must be comma-separated metric names matching ^[A-Za-z_][A-Za-z0-9_.-]{{0,63}}$.",
        "too_many": f"At most {MAX_METRICS_PER_QUERY} metrics.",
    }

    def to_internal_value(self, data):
        names = list(dict.fromkeys(str(data).split(",")))
        if not all(re.match(METRIC_NAME_REGEX, name) for name in names):
            self.fail("invalid")
        if len(names) > MAX_METRICS_PER_QUERY:
            self.fail("too_many")
        return names


class Interval(NamedTuple):
    text: str  # as the caller wrote it, which the answer repeats
    width: timedelta


class IntervalParameter(serializers.Field):
    """``30s``, ``15m``, ``6h``, ``7d``: a positive integer and a unit, as an ``Interval``."""

    default_error_messages = {"invalid": "Must be a positive integer followed by s, m, h or d, such as 15m."}

    def to_internal_value(self, data):
        text = str(data)
        match = INTERVAL.fullmatch(text)
        if not match:
            self.fail("invalid")
        return Interval(text, timedelta(**{INTERVAL_UNITS[match[2]]: int(match[1])}))


def _check_range(start, end):
    if end <= start:
        raise serializers.ValidationError({"end": ["Must be after start."]}, code="invalid")


class TelemetryQuerySerializer(serializers.Serializer):
    """Raw readings: ``[start, end)``, by default the 24 hours before ``end`` (default: now)."""

    start = UtcTimeParameter(required=False)
    end = UtcTimeParameter(required=False)
    metrics = MetricNamesParameter(required=False)
    order = serializers.ChoiceField(["asc", "desc"], default="desc")

    def validate(self, attrs):
        end = attrs.setdefault("end", self.context["now"])
        start = attrs.setdefault("start", end - DEFAULT_RANGE)
        _check_range(start, end)
        return attrs


class TelemetryAggregateQuerySerializer(serializers.Serializer):
    """Buckets of ``interval`` starting in ``[start, end)``, at most 10,000 of them (no limit in a CSV export)."""

    start = UtcTimeParameter()
    end = UtcTimeParameter()
    interval = IntervalParameter()
    metrics = MetricNamesParameter(required=False)

    def validate(self, attrs):
        _check_range(attrs["start"], attrs["end"])
        try:
            _, _, count = aggregate_buckets(start=attrs["start"], end=attrs["end"], interval=attrs["interval"].width)
        except OverflowError:  # the last bucket would end after year 9999
            raise serializers.ValidationError({"end": ["Out of range for this interval."]}, code="invalid") from None
        if self.context.get("limit_buckets", True) and count > MAX_BUCKETS:
            raise serializers.ValidationError(
                {"interval": [f"{count} buckets between start and end; at most {MAX_BUCKETS:,}: widen the interval."]},
                code="too_many_buckets",
            )
        return attrs


class TelemetryReadingSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField(source="time")
    metrics = serializers.JSONField(help_text="Only the requested metrics when `metrics` is given.")
    received_at = serializers.DateTimeField()

    def to_representation(self, instance):
        data = super().to_representation(instance)
        wanted = self.context.get("metrics")
        if wanted:
            data["metrics"] = {key: value for key, value in data["metrics"].items() if key in wanted}
        return data


class TelemetryReadingPageSerializer(serializers.Serializer):
    """A page of raw readings: cursor links (null at either end) and the readings."""

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = TelemetryReadingSerializer(many=True)


class LatestMetricValueSerializer(serializers.Serializer):
    value = serializers.JSONField()
    timestamp = serializers.DateTimeField(help_text="Time of the reading that carried the value.")


class TelemetryLatestSerializer(serializers.Serializer):
    reading = TelemetryReadingSerializer(allow_null=True, help_text="The newest reading, or null.")
    metrics = serializers.DictField(
        child=LatestMetricValueSerializer(), help_text="Newest value of each metric seen in the last 24 hours."
    )


class AggregateBucketSerializer(serializers.Serializer):
    bucket = serializers.DateTimeField(help_text="Start of the bucket (UTC multiple of the interval).")
    metric = serializers.CharField()
    count = serializers.IntegerField()
    min = serializers.FloatField()
    max = serializers.FloatField()
    avg = serializers.FloatField()
    sum = serializers.FloatField()

    def to_representation(self, instance):
        # Up to 10,000 buckets per metric in one answer: DRF's per-field machinery would cost ≈25 µs a bucket.
        return {**instance, "bucket": utc_iso(instance["bucket"])}


COMPLETE_UNTIL_HELP = (
    "The aggregates' watermark: buckets ending at or before it are materialized; buckets after it are computed "
    "from the raw readings at query time (real time: the current one is still filling). A reading that arrives "
    "late, with a time before it, is counted at the next refresh (within a minute on the Apache edition, within "
    "the refresh policy's next run or the hourly late-data refresh on the community edition). Null when the "
    "interval is served from raw readings (no aggregate divides it) or nothing is materialized yet. Also sent as "
    "the `Complete-Until` header."
)


class TelemetryAggregateSerializer(serializers.Serializer):
    interval = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    complete_until = serializers.DateTimeField(allow_null=True, help_text=COMPLETE_UNTIL_HELP)
    results = AggregateBucketSerializer(many=True)
