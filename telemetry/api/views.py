"""API views of the telemetry app."""

from datetime import datetime

import orjson
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from iothub.api.exceptions import InvalidQueryParameters
from iothub.api.exports import CSVRenderer, csv_response, wants_csv
from iothub.api.filters import FilterBackend, SearchFilter
from iothub.api.formats import UUID, utc_iso
from iothub.api.pagination import positive_int_parameter
from iothub.api.permissions import AnyRole, model_permission
from iothub.api.query_parameters import KnownQueryParametersMixin
from iothub.replica import telemetry_reads_from_replica
from telemetry.api.serializers import (
    DeviceSerializer,
    DeviceTypeSerializer,
    IngestKeySecretSerializer,
    IngestKeySerializer,
    TelemetryAggregateQuerySerializer,
    TelemetryAggregateSerializer,
    TelemetryLatestSerializer,
    TelemetryQuerySerializer,
    TelemetryReadingPageSerializer,
    TelemetryReadingSerializer,
)
from telemetry.filtersets import DeviceFilterSet
from telemetry.ingest.keys import ingest_key_assign, ingest_key_create, ingest_key_revoke, ingest_key_rotate
from telemetry.models import Device, DeviceType, IngestKey
from telemetry.selectors import (
    aggregate_complete_until,
    device_list,
    telemetry_aggregate,
    telemetry_aggregate_export,
    telemetry_export,
    telemetry_latest,
    telemetry_readings,
)


class DeviceTypeViewSet(KnownQueryParametersMixin, viewsets.ModelViewSet):
    """Device types: admins write, every role reads. A type still used by a device can't be deleted (409)."""

    queryset = DeviceType.objects.all()
    serializer_class = DeviceTypeSerializer
    permission_classes = [model_permission("telemetry.devicetype")]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]


class IngestKeyViewSet(KnownQueryParametersMixin, viewsets.ModelViewSet):
    """Device keys: admins and operators manage them, viewers don't see them. The key itself is in the answer of
    the creation (and of a rotation) only. Deleting a key revokes it: its devices return to open ingest."""

    queryset = IngestKey.objects.prefetch_related(Prefetch("devices", queryset=Device.objects.only("id")))
    serializer_class = IngestKeySerializer
    permission_classes = [model_permission("telemetry.ingestkey")]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at", "rotated_at", "refusals", "last_refused_at"]

    @extend_schema(responses={201: IngestKeySecretSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ingest_key, key = ingest_key_create(**serializer.validated_data)
        return Response(_with_key(ingest_key, key), status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        devices = serializer.validated_data.pop("devices", None)
        ingest_key = serializer.save()
        if devices is not None:
            ingest_key_assign(ingest_key=ingest_key, devices=devices)
        serializer.instance = self.get_queryset().get(pk=ingest_key.pk)  # the devices as they are now

    def perform_destroy(self, instance):
        ingest_key_revoke(ingest_key=instance)


class IngestKeyRotateApi(KnownQueryParametersMixin, APIView):
    """POST: a new key for the same devices, shown once; the old key stops working at once."""

    permission_classes = [model_permission("telemetry.ingestkey")]

    @extend_schema(summary="Rotate a device key", request=None, responses={200: IngestKeySecretSerializer})
    def post(self, request, pk):
        ingest_key = get_object_or_404(IngestKey, pk=pk)
        key = ingest_key_rotate(ingest_key=ingest_key)
        return Response(_with_key(IngestKeyViewSet.queryset.get(pk=pk), key))


def _with_key(ingest_key, key):
    return {**IngestKeySerializer(ingest_key).data, "key": key}


class DeviceViewSet(KnownQueryParametersMixin, viewsets.ModelViewSet):
    """Devices: admins and operators write, every role reads. Deleting a device deletes its telemetry."""

    serializer_class = DeviceSerializer
    permission_classes = [model_permission("telemetry.device")]
    lookup_value_regex = UUID.pattern  # a path segment that is not a UUID is a 404 at routing, not a database error
    # Ordering is the filterset's (it refuses unknown fields), so DRF's OrderingFilter is left out.
    filter_backends = [FilterBackend, SearchFilter]
    filterset_class = DeviceFilterSet
    search_fields = ["name", "serial_number"]

    def get_queryset(self):
        return device_list()

    def perform_create(self, serializer):
        super().perform_create(serializer)
        # A device that did not exist a moment ago has no readings.
        serializer.instance.last_seen_at = None

    def perform_update(self, serializer):
        super().perform_update(serializer)
        # The database sets status_changed_at when the status changes (trigger devices_status_changed_at).
        serializer.instance.refresh_from_db(fields=["status_changed_at"])


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

    def __init__(self, *, ascending=False):
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


class TelemetryQueryApi(KnownQueryParametersMixin, APIView):
    """The telemetry query endpoints: their reads of telemetry may be served by the read replica (iothub/replica.py);
    the device itself, the caller and its role are read on the primary, and so are CSV exports."""

    permission_classes = [AnyRole]

    def dispatch(self, request, *args, **kwargs):
        with telemetry_reads_from_replica():
            return super().dispatch(request, *args, **kwargs)


class DeviceTelemetryApi(TelemetryQueryApi):
    """Raw readings of a device in ``[start, end)`` (default: the last 24 hours), newest first unless
    ``order=asc``. With ``metrics=a,b``, only readings holding one of them, narrowed to them.

    As CSV (``Accept: text/csv`` or ``format=csv``): every reading of the range, streamed, not paginated; columns
    ``timestamp`` (UTC, ISO 8601 with Z) then one per metric (the requested ones in their order, else every metric
    of the range by name), cells as sent, empty where a reading lacks the metric."""

    renderer_classes = [JSONRenderer, CSVRenderer]
    query_serializer_class = TelemetryQuerySerializer
    pagination_class = TelemetryCursorPagination

    @extend_schema(summary="Raw readings of a device", responses=TelemetryReadingPageSerializer)
    def get(self, request, device_id):
        device = get_object_or_404(Device, pk=device_id)
        params = query_parameters(self.query_serializer_class, request, now=timezone.now())
        if wants_csv(request):
            export = telemetry_export(
                device=device,
                start=params["start"],
                end=params["end"],
                metrics=params.get("metrics"),
                ascending=params["order"] == "asc",
            )
            return csv_response(export, filename=f"readings-{device.pk}.csv")
        readings = telemetry_readings(
            device=device, start=params["start"], end=params["end"], metrics=params.get("metrics")
        )
        paginator = self.pagination_class(ascending=params["order"] == "asc")
        page = paginator.paginate_queryset(readings, request, view=self)
        serializer = TelemetryReadingSerializer(page, many=True, context={"metrics": params.get("metrics")})
        return paginator.get_paginated_response(serializer.data)


class DeviceTelemetryLatestApi(TelemetryQueryApi):
    """The newest reading of a device, and the newest value of each metric it sent in the last 24 hours."""

    @extend_schema(summary="Latest reading and values of a device", responses=TelemetryLatestSerializer)
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


def complete_until_header(moment):
    """``Complete-Until``: the aggregates' watermark, as the body's ``complete_until`` (absent when null)."""
    return {"Complete-Until": utc_iso(moment)} if moment else {}


class DeviceTelemetryAggregateApi(TelemetryQueryApi):
    """Per-metric ``count, min, max, avg, sum`` of a device's numeric metrics in buckets of ``interval``.

    As CSV (``Accept: text/csv`` or ``format=csv``): streamed, with no limit on the number of buckets; one row per
    bucket, columns ``bucket`` then ``<metric>:count``, ``<metric>:min``, ``<metric>:max``, ``<metric>:avg``,
    ``<metric>:sum`` for each metric (the requested ones in their order, else every metric by name). The
    ``Complete-Until`` header carries ``complete_until``."""

    renderer_classes = [FastJSONRenderer, CSVRenderer]
    query_serializer_class = TelemetryAggregateQuerySerializer

    @extend_schema(summary="Aggregates of a device per time bucket", responses=TelemetryAggregateSerializer)
    def get(self, request, device_id):
        device = get_object_or_404(Device, pk=device_id)
        exporting = wants_csv(request)
        params = query_parameters(self.query_serializer_class, request, limit_buckets=not exporting)
        complete_until = aggregate_complete_until(params["interval"].width)
        headers = complete_until_header(complete_until)
        selection = {
            "device": device,
            "start": params["start"],
            "end": params["end"],
            "interval": params["interval"].width,
            "metrics": params.get("metrics"),
        }
        if exporting:
            export = telemetry_aggregate_export(**selection)
            return csv_response(export, filename=f"aggregates-{device.pk}.csv", headers=headers)
        answer = {
            "interval": params["interval"].text,
            "start": params["start"],
            "end": params["end"],
            "complete_until": complete_until,
            "results": telemetry_aggregate(**selection),
        }
        return Response(TelemetryAggregateSerializer(answer).data, headers=headers)
