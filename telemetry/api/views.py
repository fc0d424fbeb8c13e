"""API views of the telemetry app."""

import logging
from datetime import datetime

import orjson
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, filters, viewsets
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.mediatypes import media_type_matches
from rest_framework.views import APIView

from iothub.api.exceptions import InvalidQueryParameters, ServiceUnavailable
from iothub.api.filters import FilterBackend
from iothub.api.pagination import positive_int_parameter
from iothub.api.parsers import parse_json, read_body
from iothub.api.permissions import AnyRole, model_permission
from iothub.api.problems import problem_response
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
from telemetry.ingest import MAX_BATCH, ReadingsRefused, validate_readings
from telemetry.models import Device, DeviceType
from telemetry.selectors import device_list, telemetry_aggregate, telemetry_latest, telemetry_readings
from telemetry.services import reading_ingest

logger = logging.getLogger(__name__)

_JSON = "application/json"

# A path segment that is not a UUID is a 404 at routing, never a database error.
UUID_PATH_REGEX = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


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
    lookup_value_regex = UUID_PATH_REGEX
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


_READING_SCHEMA = {
    "type": "object",
    "required": ["device_id", "timestamp", "metrics"],
    "additionalProperties": False,
    "properties": {
        "device_id": {"type": "string", "format": "uuid", "description": "An active device or one in maintenance."},
        "timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 in UTC (Z or +00:00), at most 6 fractional digits, at most 5 minutes ahead, "
            "within the retention window.",
        },
        "metrics": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 100,
            "description": "Names match ^[A-Za-z_][A-Za-z0-9_.-]{0,63}$; values are finite numbers (integers within "
            "±2^53), booleans, strings of at most 256 characters or objects nested at most 3 deep under the same "
            "rules. No null, no arrays, no U+0000.",
        },
    },
}


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """Answers JSON whatever the Accept header says: devices' HTTP stacks send odd ones, and a 406 would lose
    their readings. Also skips parsing Accept on the hot path."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def telemetry_ingest(request):
    """A POST of readings, as a plain Django view: the hot path (DESIGN.md, "Ingest rules").

    iothub.middleware.IngestFastPathMiddleware calls it for every POST to the endpoint, ahead of DRF and of the
    middleware the endpoint doesn't need; TelemetryIngestApi routes the URL, answers the other methods and
    describes it in OpenAPI. The responses are the ones DRF gave: the same content-type check, parser
    (iothub.api.parsers) and problem documents. One parse, validation in plain Python (telemetry.ingest), one
    statement that is its own transaction (telemetry.services.reading_ingest), the 201 after COMMIT.
    """
    try:
        payload = _ingest_payload(request)
    except exceptions.APIException as exc:  # 400 parse_error, 413, 415: DRF's exceptions, as its parser raised them
        return problem_response(exc.status_code, code=str(exc.detail.code), detail=str(exc.detail))
    try:
        readings, errors = validate_readings(payload)
        if not errors:
            try:
                accepted, duplicates = reading_ingest(readings=readings)
            except ReadingsRefused as exc:
                errors = exc.errors
    except (OperationalError, InterfaceError) as exc:
        logger.warning("database unavailable: %s", exc)
        return problem_response(503, code="database_unavailable", detail=ServiceUnavailable.default_detail)
    if errors:
        detail = errors[0]["detail"] if len(errors) == 1 else f"{len(errors)} problems in the request; see errors."
        return problem_response(400, code="invalid", detail=detail, errors=errors)
    return HttpResponse(orjson.dumps({"accepted": accepted, "duplicates": duplicates}), status=201, content_type=_JSON)


def _ingest_payload(request):
    """The parsed body, decided as DRF's Request.data decides it: no body is an empty object, a content type
    other than JSON a 415, then iothub.api.parsers' limit (413) and strict JSON (400)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or request.META.get("HTTP_CONTENT_LENGTH") or 0)
    except (ValueError, TypeError):
        length = 0
    if length == 0:
        return {}
    content_type = request.META.get("CONTENT_TYPE", request.META.get("HTTP_CONTENT_TYPE", ""))
    if not media_type_matches(_JSON, content_type):
        raise exceptions.UnsupportedMediaType(content_type)
    return parse_json(read_body(request))


class TelemetryIngestApi(APIView):
    """Devices post readings here. No authentication: an Authorization header, valid or not, is ignored.

    POSTs are served by telemetry_ingest above, called by iothub.middleware.IngestFastPathMiddleware before the
    request reaches this class; this class routes the URL, answers the other methods (405 problems) and carries
    the OpenAPI description.
    """

    authentication_classes = []
    permission_classes = [AllowAny]
    content_negotiation_class = JsonOnlyNegotiation

    @extend_schema(
        summary="Ingest one reading or a batch",
        description="One reading or an array of 1 to 1,000. A batch is all-or-nothing: one bad reading refuses it "
        "with every problem listed, each with a JSON pointer (`/3/timestamp`). A reading with the device and "
        "timestamp of a stored one, or of an earlier one in the batch, is a duplicate: counted, not stored again. "
        "The 201 is sent after COMMIT. Body at most 1 MiB.",
        request={
            "application/json": {
                "oneOf": [
                    _READING_SCHEMA,
                    {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": _READING_SCHEMA},
                ]
            }
        },
        responses={
            201: OpenApiResponse(
                response={
                    "type": "object",
                    "properties": {"accepted": {"type": "integer"}, "duplicates": {"type": "integer"}},
                    "required": ["accepted", "duplicates"],
                },
                description="Stored and committed.",
            ),
            400: OpenApiResponse(description="Malformed JSON (`parse_error`) or invalid readings (`invalid`)."),
            413: OpenApiResponse(description="The body exceeds 1 MiB."),
            415: OpenApiResponse(description="The body is not `application/json`."),
        },
        examples=[
            OpenApiExample(
                "One reading",
                {
                    "device_id": "6f1c2f7e-3f8a-4d7e-9a43-2b1d0c9e8f10",
                    "timestamp": "2026-11-01T12:00:00Z",
                    "metrics": {"temperature": 21.5, "door_open": False, "power": {"voltage": 229.8}},
                },
                request_only=True,
            ),
            OpenApiExample("Result", {"accepted": 1, "duplicates": 0}, response_only=True, status_codes=["201"]),
        ],
    )
    def post(self, request):
        # Reached only without the fast-path middleware (it serves every POST): the same view, on the request DRF
        # wraps and has not read.
        return telemetry_ingest(request._request)


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


class DeviceTelemetryApi(APIView):
    """Raw readings of a device in ``[start, end)`` (default: the last 24 hours), newest first unless
    ``order=asc``. With ``metrics=a,b``, only readings holding one of them, narrowed to them."""

    permission_classes = [AnyRole]

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


class DeviceTelemetryLatestApi(APIView):
    """The newest reading of a device, and the newest value of each metric it sent in the last 24 hours."""

    permission_classes = [AnyRole]

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


class DeviceTelemetryAggregateApi(APIView):
    """Per-metric ``count, min, max, avg, sum`` of a device's numeric metrics in buckets of ``interval``."""

    permission_classes = [AnyRole]
    renderer_classes = [FastJSONRenderer]

    @extend_schema(parameters=[TelemetryAggregateQuerySerializer], responses=TelemetryAggregateSerializer)
    def get(self, request, device_id):
        device = get_object_or_404(Device, pk=device_id)
        params = query_parameters(TelemetryAggregateQuerySerializer, request)
        results = telemetry_aggregate(
            device=device,
            first=params["first"],
            stop=params["stop"],
            interval=params["interval"],
            metrics=params.get("metrics"),
        )
        answer = {
            "interval": request.query_params["interval"],
            "start": params["start"],
            "end": params["end"],
            "results": results,
        }
        return Response(TelemetryAggregateSerializer(answer).data)
