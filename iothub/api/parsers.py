import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from iothub.api.exceptions import PayloadTooLarge


def read_body(request, stream=None):
    """The request body, refused with a 413 past DATA_UPLOAD_MAX_MEMORY_SIZE before more than that is read."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise PayloadTooLarge(f"The request body may not exceed {limit} bytes.")
    body = (stream or request).read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"The request body may not exceed {limit} bytes.")
    return body


def parse_json(body):
    """Strict JSON (no NaN or Infinity, valid UTF-8), with the parser's own message on failure."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"Malformed JSON: {exc}") from exc


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        request = parser_context["request"]
        return parse_json(read_body(request, stream))
