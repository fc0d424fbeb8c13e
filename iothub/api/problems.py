"""RFC 9457 problem details: the one error format of the API.

Every error body is ``{"type", "title", "status", "detail", "code", "errors"}`` served as
``application/problem+json``. ``code`` is a stable snake_case machine code; ``errors`` lists the individual
problems, each with a JSON ``pointer`` into the request body or the name of a query ``parameter``.
"""

from http import HTTPStatus

import orjson
from django.http import HttpResponse

PROBLEM_CONTENT_TYPE = "application/problem+json"
API_PREFIX = "/api/"


def is_api_request(request):
    return request.path.startswith(API_PREFIX)


def problem_body(status, *, code, detail, errors=(), **extensions):
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "errors": list(errors),
        **extensions,
    }


def problem_response(status, *, code, detail, errors=(), headers=None, **extensions):
    """A problem response for plain Django views and middleware (DRF views go through the exception handler)."""
    body = problem_body(status, code=code, detail=detail, errors=errors, **extensions)
    response = HttpResponse(orjson.dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE, headers=headers)
    return response


def json_pointer(*parts):
    """RFC 6901 pointer from path parts: ``json_pointer(0, "timestamp") == "/0/timestamp"``."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)
