"""API serializers of the rules app."""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from iothub.api.serializers import StrictModelSerializer
from rules.models import Notification, NotificationChannel
from rules.notifications import clean_channel_target


class NotificationChannelSerializer(StrictModelSerializer):
    class Meta:
        model = NotificationChannel
        fields = ["id", "name", "kind", "target", "enabled", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

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
            "next_attempt_at",
            "claimed_at",
            "sent_at",
            "created_at",
            "updated_at",
            "payload",
        ]
        read_only_fields = fields
