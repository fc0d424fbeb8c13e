"""Project middleware: the HTTPS redirect and problem details for errors raised outside DRF under /api/."""

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponsePermanentRedirect
from django.middleware.security import SecurityMiddleware as DjangoSecurityMiddleware

from iothub.api.problems import is_api_request, problem_response

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
