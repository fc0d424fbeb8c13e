"""The ingest fast path's middleware: POSTs of readings served ahead of DRF and most middleware."""

from django.urls import reverse

from telemetry.ingest.views import telemetry_ingest


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
