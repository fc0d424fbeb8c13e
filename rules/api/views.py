"""API views of the rules app."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from iothub.access import may_read_secrets
from iothub.api.exceptions import Conflict
from iothub.api.exports import CSVRenderer, csv_response, wants_csv
from iothub.api.permissions import model_permission
from iothub.api.query_parameters import KnownQueryParametersMixin
from rules import selectors, services
from rules.api.serializers import (
    EventSerializer,
    EventTransitionSerializer,
    NotificationChannelSerializer,
    NotificationSerializer,
    RuleSerializer,
)
from rules.filtersets import EventFilterSet, NotificationFilterSet, RuleFilterSet
from rules.models import Notification, NotificationChannel, severity_rank


class NotificationChannelViewSet(KnownQueryParametersMixin, viewsets.ModelViewSet):
    queryset = NotificationChannel.objects.all()
    serializer_class = NotificationChannelSerializer
    permission_classes = [model_permission("rules.notificationchannel")]
    filterset_fields = ["kind", "enabled"]
    ordering_fields = ["name", "kind", "created_at"]

    @property
    def search_fields(self):
        # Searching the targets would reveal a token a character at a time to a role that sees them masked.
        return ["name", "target"] if may_read_secrets(getattr(self.request, "user", None)) else ["name"]


class NotificationViewSet(KnownQueryParametersMixin, viewsets.ReadOnlyModelViewSet):
    """Delivery attempts, newest first. Written by the rule trigger and the worker only."""

    queryset = Notification.objects.all()
    serializer_class = NotificationSerializer
    permission_classes = [model_permission("rules.notification")]
    filterset_class = NotificationFilterSet
    ordering_fields = ["created_at", "next_attempt_at", "sent_at", "attempts"]


class RuleViewSet(KnownQueryParametersMixin, viewsets.ModelViewSet):
    """Rules the database evaluates on every telemetry insert. Admins write; every role reads."""

    queryset = selectors.rule_list()
    serializer_class = RuleSerializer
    permission_classes = [model_permission("rules.rule")]
    filterset_class = RuleFilterSet
    search_fields = ["name", "description", "metric"]
    ordering_fields = ["name", "severity", "metric", "created_at", "updated_at"]
    ordering_expressions = {"severity": severity_rank()}


class EventViewSet(KnownQueryParametersMixin, viewsets.ReadOnlyModelViewSet):
    """Events raised by the rule trigger, newest first. Acknowledge and resolve through their own endpoints.

    The list as CSV (``Accept: text/csv`` or ``format=csv``): every event the filters and ordering select, streamed,
    not paginated; columns in the order of `rules.selectors.EVENT_EXPORT_COLUMNS` (docs/rules.md)."""

    queryset = selectors.event_list()
    serializer_class = EventSerializer
    permission_classes = [model_permission("rules.event")]
    filterset_class = EventFilterSet
    ordering_fields = ["triggered_at", "last_triggered_at", "occurrence_count", "severity"]
    ordering_expressions = {"severity": severity_rank()}  # critical > warning > info, not alphabetical
    renderer_classes = [JSONRenderer, CSVRenderer]

    def get_renderers(self):
        # Only the list is exported.
        renderers = super().get_renderers()
        return renderers if self.action == "list" else [r for r in renderers if not isinstance(r, CSVRenderer)]

    def list(self, request, *args, **kwargs):
        if wants_csv(request):
            events = self.filter_queryset(self.get_queryset())
            return csv_response(selectors.event_export(events), filename="events.csv")
        return super().list(request, *args, **kwargs)


class _EventTransitionApi(KnownQueryParametersMixin, APIView):
    """POST {"note": "…"} (optional) moves the event on; 409 problem when its status doesn't allow it."""

    permission_classes = [model_permission("rules.event")]
    transition = None

    @extend_schema(
        request=EventTransitionSerializer,
        responses={
            200: EventSerializer,
            409: OpenApiResponse(description="The event's status does not allow it (`invalid_transition`)."),
        },
    )
    def post(self, request, pk):
        event = get_object_or_404(selectors.event_list(), pk=pk)
        serializer = EventTransitionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            event = self.transition(event=event, user=request.user, note=serializer.validated_data["note"])
        except services.InvalidEventTransition as error:
            raise Conflict(str(error), code="invalid_transition") from error
        return Response(EventSerializer(event).data)


class EventAcknowledgeApi(_EventTransitionApi):
    """Acknowledge an open event, with an optional note.

    An acknowledged event is still updated by repeat breaches; only open events can be acknowledged (409 else)."""

    transition = staticmethod(services.event_acknowledge)


class EventResolveApi(_EventTransitionApi):
    """Resolve an open or acknowledged event, with an optional note.

    A resolved event is final (409 when resolved already); the rule's next breach opens a new one."""

    transition = staticmethod(services.event_resolve)
