"""The API's own exceptions. They import nothing from DRF's views, so the parser, pagination and filter classes
that DRF loads from settings can raise them without an import cycle (see exception_handler.py for the mapping)."""

from rest_framework import exceptions, status


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unavailable."
    default_code = "database_unavailable"


class InvalidQueryParameters(exceptions.ValidationError):
    """Validation errors about query parameters: their ``errors`` name a ``parameter``, not a body pointer."""

    default_code = "invalid_parameter"
