"""The ingest endpoint's views: telemetry_ingest serves the POSTs, TelemetryIngestApi routes the URL and describes
it in OpenAPI."""

import logging

import orjson
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.utils.mediatypes import media_type_matches
from rest_framework.views import APIView

from iothub.api.exception_handler import validation_problem
from iothub.api.exceptions import InvalidQueryParameters, ServiceUnavailable
from iothub.api.parsers import parse_json, read_body
from iothub.api.problems import problem_response
from iothub.api.query_parameters import KnownQueryParametersMixin, unknown_parameter_errors
from iothub.client_address import client_address
from telemetry.ingest.keys import CHALLENGE, presented_key
from telemetry.ingest.services import InvalidReadings, KeyRefused, RateLimited, reading_ingest
from telemetry.ingest.validation import MAX_BATCH

logger = logging.getLogger(__name__)

_JSON = "application/json"
KEY_REFUSED = (
    "A device of this request has a device key, and the request does not carry it: send it as "
    "`Authorization: Device <key>`."
)
KEY_CHALLENGE = {"WWW-Authenticate": CHALLENGE}

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
            "not older than the aggregates can still count: the first whole UTC day the raw retention keeps two "
            "hours later (89 to 90 days back by default).",
        },
        "metrics": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 100,
            "description": "Names match ^[A-Za-z_][A-Za-z0-9_.-]{0,63}$; values are finite numbers (integers within "
            "±2^53, any number within ±1e288 so that no aggregate sum overflows), booleans, strings of at most 256 "
            "characters or objects nested at most 3 deep under the same rules. No null, no arrays, no U+0000.",
        },
    },
}


class JsonOnlyNegotiation(DefaultContentNegotiation):
    """Answers JSON whatever the Accept header says: devices' HTTP stacks send odd ones, and a 406 would lose
    their readings. Also skips parsing Accept on the hot path."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def telemetry_ingest(request):
    """A POST of readings, as a plain Django view: the hot path.

    telemetry.ingest.middleware.IngestFastPathMiddleware calls it for every POST to the endpoint, ahead of DRF and
    of the middleware the endpoint doesn't need; TelemetryIngestApi routes the URL, answers the other methods and
    describes it in OpenAPI. The responses are the ones DRF gave: the same content-type check, parser
    (iothub.api.parsers) and problem documents. One parse, then one service call that validates in plain Python
    and stores the readings in one statement, its own transaction (telemetry.ingest.services.reading_ingest); the
    201 after COMMIT.
    """
    if request.META.get("QUERY_STRING") and request.GET:
        # The endpoint takes no query parameter (KnownQueryParametersMixin's check, on the fast path).
        body = validation_problem(InvalidQueryParameters(unknown_parameter_errors(request.GET, allowed=())))
        return problem_response(400, code=body["code"], detail=body["detail"], errors=body["errors"])
    try:
        payload = _ingest_payload(request)
    except exceptions.APIException as exc:  # 400 parse_error, 413, 415: DRF's exceptions, as its parser raised them
        return problem_response(exc.status_code, code=str(exc.detail.code), detail=str(exc.detail))
    try:
        ingested = reading_ingest(payload=payload, key=presented_key(request))
    except KeyRefused as exc:
        # The devices and the caller's address, never the key: operators find a misconfigured device or gateway.
        logger.warning(
            "ingest refused: no valid device key for %s from %s", ", ".join(exc.devices), client_address(request)
        )
        return problem_response(401, code="device_key_invalid", detail=KEY_REFUSED, headers=KEY_CHALLENGE)
    except InvalidReadings as exc:
        errors = exc.errors
        detail = errors[0]["detail"] if len(errors) == 1 else f"{len(errors)} problems in the request; see errors."
        code = "invalid" if exc.status == 400 else "reading_conflict"
        return problem_response(exc.status, code=code, detail=detail, errors=errors)
    except RateLimited as exc:
        detail = f"Too many ingest requests for device {', '.join(exc.devices)}; retry in {exc.retry_after} s."
        return problem_response(429, code="throttled", detail=detail, headers={"Retry-After": str(exc.retry_after)})
    except (OperationalError, InterfaceError) as exc:
        logger.warning("database unavailable: %s", exc)
        return problem_response(503, code="database_unavailable", detail=ServiceUnavailable.default_detail)
    return HttpResponse(orjson.dumps(ingested._asdict()), status=201, content_type=_JSON)


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


class TelemetryIngestApi(KnownQueryParametersMixin, APIView):
    """Devices post readings here. No user authentication (a JWT is ignored); a device that has a device key only
    accepts readings whose request carries it (``Authorization: Device <key>``, telemetry.ingest.keys).

    POSTs are served by telemetry_ingest above, called by telemetry.ingest.middleware.IngestFastPathMiddleware
    before the request reaches this class; this class routes the URL, answers the other methods (405 problems)
    and carries the OpenAPI description.
    """

    authentication_classes = []
    permission_classes = [AllowAny]
    content_negotiation_class = JsonOnlyNegotiation

    @extend_schema(
        summary="Ingest one reading or a batch",
        description="One reading or an array of 1 to 1,000. A batch is all-or-nothing: one bad reading refuses it "
        "with every problem listed, each with a JSON pointer (`/3/timestamp`). The 201 is sent after COMMIT. Body at "
        "most 1 MiB.\n\n"
        "A reading with the device and timestamp of a stored one, or of an earlier one in the batch, is **merged** "
        "into it when it adds metrics and the metrics both hold have equal values (the new metrics are stored and "
        "evaluated by the rules); it is a **duplicate** (counted, not stored again, evaluated by no rule) when it "
        "adds none, as a resent reading; and it is a **conflict** when a metric both hold has another value: a 409 "
        "problem (`reading_conflict`) naming each such reading and metric (`/3/metrics/temp`), and nothing of the "
        "request is stored. Within a batch, readings of one device and timestamp combine first, in body order: "
        "the combined reading counts as its first one (accepted, merged, or a duplicate with the others when it "
        "adds nothing to a stored one), each later one as merged or a duplicate.\n\n"
        "No user authentication. A device given a device key (`ingest-keys/`) only accepts readings whose request "
        "carries it: `Authorization: Device <key>`; a batch must carry the key of every keyed device in it (a "
        "gateway key shared by its devices does). Devices without a key accept readings without one.\n\n"
        "Each device accepts a limited number of requests per window (`INGEST_DEVICE_RATE`, default 10 per "
        "second; a batch counts once for each device it holds); beyond it, a 429 with `Retry-After`. Refused "
        "requests count nothing.",
        auth=[{"deviceKey": []}, {}],
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
                    "properties": {
                        "accepted": {"type": "integer", "description": "Readings stored as new readings."},
                        "merged": {
                            "type": "integer",
                            "description": "Readings whose metrics were added to the stored (or an earlier) reading "
                            "of their device and timestamp.",
                        },
                        "duplicates": {
                            "type": "integer",
                            "description": "Readings that added nothing: already stored (a resend), in full.",
                        },
                    },
                    "required": ["accepted", "merged", "duplicates"],
                },
                description="Stored and committed.",
            ),
            400: OpenApiResponse(description="Malformed JSON (`parse_error`) or invalid readings (`invalid`)."),
            401: OpenApiResponse(
                description="A keyed device of the body was not given its key (`device_key_invalid`), whatever "
                "else is wrong with the body; nothing is stored. `WWW-Authenticate: Device`."
            ),
            409: OpenApiResponse(
                description="A reading holds a metric that the stored reading of its device and timestamp, or an "
                "earlier one in the batch, holds with another value (`reading_conflict`); nothing is stored."
            ),
            429: OpenApiResponse(
                description="A device of the body is over its request rate (`throttled`), or the proxy's ceiling "
                "per client address was reached; nothing is stored. Retry after `Retry-After` seconds."
            ),
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
            OpenApiExample(
                "Result", {"accepted": 1, "merged": 0, "duplicates": 0}, response_only=True, status_codes=["201"]
            ),
        ],
    )
    def post(self, request):
        # Reached only without the fast-path middleware (it serves every POST): the same view, on the request DRF
        # wraps and has not read.
        return telemetry_ingest(request._request)
