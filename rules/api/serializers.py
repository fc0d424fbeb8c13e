"""API serializers of the rules app."""

import copy

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from iothub.access import may_read_secrets
from iothub.api.serializers import StrictFieldsMixin, StrictModelSerializer
from rules.models import Event, Notification, NotificationChannel, Rule
from rules.notifications import clean_channel_target, mask_channel_target


class NotificationChannelSerializer(StrictModelSerializer):
    class Meta:
        model = NotificationChannel
        fields = ["id", "name", "kind", "target", "enabled", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {"target": {"help_text": "Whole for admins; masked for other roles (docs/rules.md)."}}

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if not may_read_secrets(getattr(request, "user", None)):
            data["target"] = mask_channel_target(instance.kind, instance.target)
        return data

    def validate(self, attrs):
        # A PATCH of either field re-checks the pair: a webhook switched to email needs an address.
        kind = attrs.get("kind", getattr(self.instance, "kind", None))
        target = attrs.get("target", getattr(self.instance, "target", ""))
        try:
            attrs["target"] = clean_channel_target(kind, target)
        except DjangoValidationError as error:
            raise serializers.ValidationError({"target": error.messages}, code=error.code) from error
        return attrs


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = [
            "id",
            "event",
            "channel",
            "status",
            "attempts",
            "last_error",
            "request",
            "next_attempt_at",
            "claimed_at",
            "sent_at",
            "created_at",
            "updated_at",
            "payload",
        ]
        read_only_fields = fields


class RuleSerializer(StrictModelSerializer):
    # Written through the RuleChannel table (DRF leaves a many-to-many with a through model read-only).
    channels = serializers.PrimaryKeyRelatedField(
        many=True, queryset=NotificationChannel.objects.all(), required=False, help_text="Notification channel ids."
    )
    threshold = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="Threshold rules: a number for gt/lt/gte/lte; a number, boolean or string for eq/neq. No-data rules: "
        "null.",
    )
    clear_threshold = serializers.JSONField(
        required=False, allow_null=True, help_text=Rule._meta.get_field("clear_threshold").help_text
    )

    class Meta:
        model = Rule
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "device_type",
            "device",
            "metric",
            "operator",
            "threshold",
            "no_data_seconds",
            "severity",
            "message_template",
            "enabled",
            "dedupe",
            "auto_resolve",
            "clear_threshold",
            "for_seconds",
            "max_gap_seconds",
            "channels",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {
            "metric": {"help_text": Rule._meta.get_field("metric").help_text},
            "operator": {"help_text": "Threshold rules: gt, lt, gte, lte, eq or neq. No-data rules: null."},
            "message_template": {
                "help_text": "Threshold rules: {device_name}, {metric}, {value}, {operator}, {threshold}. No-data "
                "rules: {device_name}, {metric}, {last_seen}, {silent_for}. Default: the kind's own template."
            },
        }

    def validate(self, attrs):
        # Rule.clean() checks the rule as a whole (a PATCH of one field is checked against the others) and gives
        # it its kind's default message.
        candidate = copy.copy(self.instance) if self.instance else Rule()
        for name, value in attrs.items():
            if name != "channels":
                setattr(candidate, name, value)
        try:
            candidate.clean()
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict) from error
        if candidate.message_template != getattr(self.instance, "message_template", None):
            attrs["message_template"] = candidate.message_template
        return attrs


class EventSerializer(serializers.ModelSerializer):
    device_name = serializers.CharField(source="device.name", read_only=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    resolved_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "rule",
            "rule_name",
            "device",
            "device_name",
            "severity",
            "message",
            "status",
            "triggered_at",
            "last_triggered_at",
            "occurrence_count",
            "trigger_values",
            "last_values",
            "acknowledged_at",
            "acknowledged_by",
            "acknowledged_note",
            "resolved_at",
            "resolved_by",
            "resolved_note",
            "created_at",
        ]
        read_only_fields = fields


class EventTransitionSerializer(StrictFieldsMixin, serializers.Serializer):
    """The body of acknowledge/ and resolve/: an optional note."""

    note = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
