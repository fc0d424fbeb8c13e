"""API views of the telemetry app."""

from datetime import datetime

import orjson
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, filters, viewsets
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from iothub.api.exceptions import InvalidQueryParameters
from iothub.api.filters import FilterBackend
from iothub.api.formats import UUID
from iothub.api.pagination import positive_int_parameter
from iothub.api.permissions import AnyRole, model_permission
from iothub.replica import telemetry_reads_from_replica
from telemetry.api.serializers import (
    DeviceSerializer,
    DeviceTypeSerializer,
    TelemetryAggregateQuerySerializer,
    TelemetryAggregateSerializer,
    TelemetryLatestSerializer,
    TelemetryQuerySerializer,
    TelemetryReadingPageSerializer,
    TelemetryReadingSerializer,
)
from telemetry.filtersets import DeviceFilterSet
from telemetry.models import Device, DeviceType
from telemetry.selectors import device_list, telemetry_aggregate, telemetry_latest, telemetry_readings


class DeviceTypeViewSet(viewsets.ModelViewSet):
    """Device types: admins write, every role reads. A type still used by a device can't be deleted (409)."""

    queryset = DeviceType.objects.all()
    serializer_class = DeviceTypeSerializer
    permission_classes = [model_permission("telemetry.devicetype")]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]


class DeviceViewSet(viewsets.ModelViewSet):
    """Devices: admins and operators write, every role reads. Deleting a device deletes its telemetry."""

    serializer_class = DeviceSerializer
    permission_classes = [model_permission("telemetry.device")]
    lookup_value_regex = UUID.pattern  # a path segment that is not a UUID is a 404 at routing, not a database error
    # Ordering is the filterset's (it refuses unknown fields), so DRF's OrderingFilter is left out.
    filter_backends = [FilterBackend, filters.SearchFilter]
    filterset_class = DeviceFilterSet
    search_fields = ["name", "serial_number"]

    def get_queryset(self):
        return device_list()

    def perform_create(self, serializer):
        super().perform_create(serializer)
        # A device that did not exist a moment ago has no readings.
        serializer.instance.last_seen_at = None


def query_parameters(serializer_class, request, **context):
    """The validated query parameters, or a 400 problem naming each bad one."""
    serializer = serializer_class(data=request.query_params, context={"request": request, **context})
    if not serializer.is_valid():
        raise InvalidQueryParameters(serializer.errors)
    return serializer.validated_data


class TelemetryCursorPagination(CursorPagination):
    """``?cursor=&page_size=`` → ``{next, previous, results}``, keyed on ``time`` (unique per device).

    page_size defaults to 50 and is clamped to 500; a cursor that is not one of ours is a 400 naming it.
    """

    page_size_query_param = "page_size"
    max_page_size = 500

    def __init__(self, *, ascending):
        self.ordering = "time" if ascending else "-time"

    def get_page_size(self, request):
        requested = positive_int_parameter(request, self.page_size_query_param)
        return self.page_size if requested is None else min(requested, self.max_page_size)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
            if cursor is not None and cursor.position is not None:
                datetime.fromisoformat(cursor.position)  # a forged position must not reach the query
        except (exceptions.NotFound, ValueError):
            raise InvalidQueryParameters({self.cursor_query_param: ["Invalid cursor."]}) from None
        return cursor


class TelemetryQueryApi(APIView):
    """The telemetry query endpoints: their reads of telemetry may be served by the read replica (iothub/replica.py);
    the device itself, the caller and its role are read on the primary."""

    permission_classes = [AnyRole]

    def dispatch(self, request, *args, **kwargs):
        with telemetry_reads_from_replica():
            return super().dispatch(request, *args, **kwargs)


class DeviceTelemetryApi(TelemetryQueryApi):
    """Raw readings of a device in ``[start, end)`` (default: the last 24 hours), newest first unless
    ``order=asc``. With ``metrics=a,b``, only readings holding one of them, narrowed to them."""

    @extend_schema(parameters=[TelemetryQuerySerializer], responses=TelemetryReadingPageSerializer)
    def get(self, request, device_id):
        device = get_object_or_404(Device, pk=device_id)
        params = query_parameters(TelemetryQuerySerializer, request, now=timezone.now())
        readings = telemetry_readings(
            device=device, start=params["start"], end=params["end"], metrics=params.get("metrics")
        )
        paginator = TelemetryCursorPagination(ascending=params["order"] == "asc")
        page = paginator.paginate_queryset(readings, request, view=self)
        serializer = TelemetryReadingSerializer(page, many=True, context={"metrics": params.get("metrics")})
        return paginator.get_paginated_response(serializer.data)


class DeviceTelemetryLatestApi(TelemetryQueryApi):
    """The newest reading of a device, and the newest value of each metric it sent in the last 24 hours."""

    @extend_schema(responses=TelemetryLatestSerializer)
    def get(self, request, device_id):
        device = get_object_or_404(Device, pk=device_id)
        reading, metrics = telemetry_latest(device=device, now=timezone.now())
        latest = {
            "reading": reading,
            "metrics": {name: {"value": value, "timestamp": time} for name, (value, time) in metrics.items()},
        }
        return Response(TelemetryLatestSerializer(latest).data)


class FastJSONRenderer(JSONRenderer):
    """orjson: thousands of buckets render in about a millisecond instead of ten."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return b"" if data is None else orjson.dumps(data)


class DeviceTelemetryAggregateApi(TelemetryQueryApi):
    """Per-metric ``count, min, max, avg, sum`` of a device's numeric metrics in buckets of ``interval``."""

    renderer_classes = [FastJSONRenderer]

    @extend_schema(parameters=[TelemetryAggregateQuerySerializer], responses=TelemetryAggregateSerializer)
    def get(self, request, device_id):
        device = get_object_or_404(Device, pk=device_id)
        params = query_parameters(TelemetryAggregateQuerySerializer, request)
        results = telemetry_aggregate(
            device=device,
            start=params["start"],
            end=params["end"],
            interval=params["interval"].width,
            metrics=params.get("metrics"),
        )
        answer = {
            "interval": params["interval"].text,
            "start": params["start"],
            "end": params["end"],
            "results": results,
        }
        return Response(TelemetryAggregateSerializer(answer).data)
