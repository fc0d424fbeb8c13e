"""Ingest: ``POST /api/v1/telemetry/ingest/``, the fast path from a device's readings to the INSERT.

Three hops from the ``MIDDLEWARE`` setting (or from ``iothub/urls.py`` through ``telemetry/api/urls.py``):

1. ``middleware.IngestFastPathMiddleware`` takes every POST to the endpoint ahead of DRF and most middleware
   (``views.TelemetryIngestApi`` routes the URL, answers other methods and describes the endpoint in OpenAPI);
2. ``views.telemetry_ingest`` reads and parses the body, takes the device key the request carries (``keys``) and
   turns the outcome into the response;
3. ``services.reading_ingest`` validates the readings (the rules: ``validation``) and runs ``INSERT_READINGS``,
   a ``statement.PreparedStatement``: prepared once per database session, sent without Django's per-request
   health check, sent again once on a connection that broke while idle.
"""
