"""Project middleware: the HTTPS redirect, the ingest fast path and problem details for errors raised outside
DRF under /api/."""

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponsePermanentRedirect
from django.middleware.security import SecurityMiddleware as DjangoSecurityMiddleware
from django.urls import reverse

from iothub.api.problems import is_api_request, problem_response
from telemetry.api.views import telemetry_ingest

logger = logging.getLogger(__name__)


class HttpResponsePermanentRedirectKeepMethod(HttpResponsePermanentRedirect):
    status_code = 308


class SecurityMiddleware(DjangoSecurityMiddleware):
    """Django's, but its HTTP→HTTPS redirect is a 308 so a device's POST stays a POST (301 turns it into GET)."""

    def process_request(self, request):
        response = super().process_request(request)
        if isinstance(response, HttpResponsePermanentRedirect):
            return HttpResponsePermanentRedirectKeepMethod(response["Location"])
        return response


class ApiProblemMiddleware:
    """Turns exceptions escaping plain Django views under /api/ into problem details (DRF views have their own
    exception handler). A lost database is a 503 the client may retry, not a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_api_request(request):
            return None
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.warning("database unavailable: %s", exception)
            return problem_response(503, code="database_unavailable", detail="The database is unavailable.")
        return None


class IngestFastPathMiddleware:
    """Serves every POST to the telemetry ingest endpoint itself, without the middleware below it and without DRF.

    Devices post readings at a high rate to this one endpoint, which needs no session, user, CSRF check (it is
    unauthenticated), messages or static files; yet that middleware and DRF's dispatch took about a third of the
    endpoint's Python CPU (measured in-process, together with the device check folded into the INSERT: ~1.1 ms
    down to ~0.65 ms per single-reading POST). What still applies runs anyway: SecurityMiddleware and
    XFrameOptionsMiddleware sit above this one (HTTPS redirect, security headers); the host is validated here as
    CommonMiddleware would and Content-Length set as it would; the view answers a lost database with the 503
    problem itself. Other methods take the normal path to the DRF view (405 problems).
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.path = None  # resolved on the first request, once the URLconf and script prefix are known

    def __call__(self, request):
        if self.path is None:
            self.path = reverse("telemetry-api:telemetry-ingest")
        if request.method != "POST" or request.path != self.path:
            return self.get_response(request)
        request.get_host()  # ALLOWED_HOSTS: raises DisallowedHost (a 400), as in CommonMiddleware
        response = telemetry_ingest(request)
        response.headers["Content-Length"] = str(len(response.content))
        return response
