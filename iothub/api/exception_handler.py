"""The API's exception handler: every error a DRF view raises becomes one RFC 9457 problem document."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from iothub.api.exceptions import Conflict, InvalidQueryParameters, ServiceUnavailable
from iothub.api.problems import PROBLEM_CONTENT_TYPE, json_pointer, problem_body
from iothub.models import LAST_ADMIN_SQLSTATE

logger = logging.getLogger(__name__)


class ProblemRenderer(JSONRenderer):
    media_type = PROBLEM_CONTENT_TYPE


# SQLSTATEs a constraint raises when a concurrent writer slipped past the serializers' checks.
_INTEGRITY_PROBLEMS = {
    "23505": (Conflict, "A resource with these values already exists."),  # unique_violation
    "23503": (Conflict, "The resource is referenced by, or references, another one."),  # foreign_key_violation
    "23514": (exceptions.ValidationError, "The values violate a database constraint."),  # check_violation
}

# Our own SQLSTATEs (class IO), raised by the SQL in sql/ (listed in sql/README.md); the database's message and HINT
# are written for a person, so they become the problem's detail.
_DOMAIN_PROBLEMS = {
    "IO001": (Conflict, "invalid_transition"),  # event_status_transition: an event status change out of order
    LAST_ADMIN_SQLSTATE: (Conflict, "last_admin"),  # users_keep_an_active_admin: no active admin would be left
    # rules_metric_declared: the rule's metric is not declared by its target's type (changed since the API checked)
    "IO004": (exceptions.ValidationError, "undeclared_metric"),
}


def _as_api_exception(exc):
    """Map Django and database exceptions onto API exceptions; None for anything unexpected (a 500)."""
    if isinstance(exc, exceptions.APIException):
        return exc
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, (ProtectedError, RestrictedError)):
        names = sorted({str(obj._meta.verbose_name_plural) for obj in exc.protected_objects})  # may be lazy
        return Conflict(f"The resource is still referenced by {', '.join(names)}.", code="protected")
    if isinstance(exc, IntegrityError):
        problem = _INTEGRITY_PROBLEMS.get(getattr(exc.__cause__, "pgcode", None))
        if problem:
            exception_class, detail = problem
            return exception_class(detail)
        return None
    if isinstance(exc, DatabaseError) and getattr(exc.__cause__, "pgcode", None) in _DOMAIN_PROBLEMS:
        exception_class, code = _DOMAIN_PROBLEMS[exc.__cause__.pgcode]
        diag = exc.__cause__.diag
        return exception_class(" ".join(filter(None, [diag.message_primary, diag.message_hint])), code=code)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", exc)
        return ServiceUnavailable()
    return None


def _validation_errors(detail, path=()):
    """Flatten DRF's nested error detail into ``[(path, message, code)]``."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            sub_path = path if key == api_settings.NON_FIELD_ERRORS_KEY else (*path, key)
            yield from _validation_errors(value, sub_path)
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)):
                yield from _validation_errors(value, (*path, index))
            else:
                yield from _validation_errors(value, path)
    else:
        yield path, str(detail), getattr(detail, "code", "invalid")


def validation_problem(exc):
    is_query = isinstance(exc, InvalidQueryParameters)
    errors = []
    for path, message, code in _validation_errors(exc.detail):
        location = {"parameter": ".".join(map(str, path))} if is_query else {"pointer": json_pointer(*path)}
        errors.append({**location, "detail": message, "code": code})
    detail = errors[0]["detail"] if len(errors) == 1 else f"{len(errors)} problems in the request; see errors."
    code = "invalid_parameter" if is_query else "invalid"
    return problem_body(exc.status_code, code=code, detail=detail, errors=errors)


def _problem(exc):
    if isinstance(exc, exceptions.ValidationError):
        return validation_problem(exc)
    detail = exc.detail
    if isinstance(detail, dict) and "detail" in detail:
        # SimpleJWT's token errors: {"detail", "code", "messages"}.
        return problem_body(
            exc.status_code, code=str(detail.get("code") or exc.default_code), detail=str(detail["detail"])
        )
    code = getattr(detail, "code", None) or exc.default_code
    extensions = exc.problem_extensions() if hasattr(exc, "problem_extensions") else {}
    return problem_body(exc.status_code, code=str(code), detail=str(detail), **extensions)


def problem_exception_handler(exc, context):
    api_exc = _as_api_exception(exc)
    if api_exc is None:
        return None  # Django's handler500 answers with a problem and logs the traceback.
    # DRF's own handler adds WWW-Authenticate / Retry-After and rolls back the atomic request.
    response = drf_exception_handler(api_exc, context)
    response.data = _problem(api_exc)
    response.content_type = PROBLEM_CONTENT_TYPE
    # A problem is JSON whatever the request negotiated (the schema's YAML, Swagger's HTML, an export's CSV).
    request = context.get("request")
    if request is not None:
        request.accepted_renderer, request.accepted_media_type = ProblemRenderer(), PROBLEM_CONTENT_TYPE
    return response
