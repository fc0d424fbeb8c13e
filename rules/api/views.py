"""API views of the rules app."""

from rest_framework import viewsets

from iothub.api.permissions import ReadAnyWriteAdmin
from rules.api.serializers import NotificationChannelSerializer, NotificationSerializer
from rules.models import Notification, NotificationChannel


class NotificationChannelViewSet(viewsets.ModelViewSet):
    queryset = NotificationChannel.objects.all()
    serializer_class = NotificationChannelSerializer
    permission_classes = [ReadAnyWriteAdmin]
    filterset_fields = ["kind", "enabled"]
    search_fields = ["name", "target"]
    ordering_fields = ["name", "kind", "created_at"]


class NotificationViewSet(viewsets.ReadOnlyModelViewSet):
    """Delivery attempts, newest first. Written by the rule trigger and the worker only."""

    queryset = Notification.objects.all()
    serializer_class = NotificationSerializer
    permission_classes = [ReadAnyWriteAdmin]
    filterset_fields = ["event", "status", "channel"]
    ordering_fields = ["created_at", "next_attempt_at", "sent_at", "attempts"]
