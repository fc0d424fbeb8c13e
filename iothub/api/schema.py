"""The OpenAPI schema's error responses, documented in one place for every operation.

Every error the API returns is a ``Problem`` (iothub/api/problems.py) served as ``application/problem+json``. Which
statuses an operation can answer follows from what its view is made of, the way DRF itself decides at run time:
a request body can be malformed (400), too large (413) or not JSON (415); query parameters can be invalid (400);
authenticators that name a ``WWW-Authenticate`` challenge turn bad credentials into 401s; a role permission that
leaves a role out answers it 403; path parameters and page numbers can miss (404); writes through a model viewset
can hit a constraint (409); throttles and the login protection (``login_protected`` views) answer 429; every
operation reaches the database (503) and may fail unexpectedly (500). A view documents a status of its own (an
event transition's 409) with just a description: the problem shape is added here. A view that answers an error
with a richer document (health's 503) declares its content and keeps it.

A method the path does not allow is a 405 problem too; OpenAPI has no operation to attach it to.

Every operation has a summary (a viewset's from its action and model, other views' from ``extend_schema``), the
query parameters its view declares (iothub/api/query_parameters.py accepts exactly those), and descriptions in
Markdown (the docstrings' reST literals are converted by ``markdown_descriptions``).
"""

import re

from drf_spectacular import openapi
from drf_spectacular.plumbing import ResolvedComponent, get_doc
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import SAFE_METHODS
from rest_framework.viewsets import ViewSetMixin

from iothub.api.exports import CSV_CONTENT_TYPE
from iothub.api.permissions import RolePermission
from iothub.api.problems import PROBLEM_CONTENT_TYPE
from iothub.models import Role

PROBLEM_ERROR_SCHEMA = {
    "type": "object",
    "description": "One problem of the request: where it is (`pointer` into the body, or query `parameter`), "
    "what it is (`detail`) and a stable machine `code`.",
    "properties": {
        "pointer": {
            "type": "string",
            "description": "RFC 6901 JSON pointer into the request body (`/0/timestamp`; empty for the whole body).",
        },
        "parameter": {"type": "string", "description": "The query parameter at fault."},
        "detail": {"type": "string"},
        "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
    },
    "required": ["detail", "code"],
    "oneOf": [{"required": ["pointer"]}, {"required": ["parameter"]}],
}

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details, the body of every error response (`application/problem+json`). "
    "Some problems carry extension members beside these.",
    "properties": {
        "type": {"type": "string", "description": "`about:blank` unless a more specific URI is documented."},
        "title": {"type": "string", "description": "The HTTP status phrase."},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "code": {
            "type": "string",
            "pattern": "^[a-z][a-z0-9_]*$",
            "description": "A stable snake_case machine code (`invalid`, `not_authenticated`, `token_not_valid`…).",
        },
        "errors": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/ProblemError"},
            "description": "Every individual problem, possibly none.",
        },
    },
    "required": ["type", "title", "status", "detail", "code", "errors"],
}

PROBLEM_DESCRIPTIONS = {
    400: "Malformed JSON (`parse_error`), invalid fields (`invalid`, each error with a `pointer`) or invalid query "
    "parameters (`invalid_parameter`, each error with a `parameter`).",
    401: "No credentials (`not_authenticated`), or credentials or a token that are not valid.",
    403: "The caller's role does not allow this (`permission_denied`); the detail and the extension member "
    "`required_roles` name the roles that may.",
    404: "No such resource, or a page past the end (`not_found`).",
    409: "The request conflicts with the resource's state or a database constraint (`conflict`, `protected`).",
    413: "The body exceeds 1 MiB (`payload_too_large`).",
    415: "The body is not `application/json` (`unsupported_media_type`).",
    429: "Too many requests or failed logins (`throttled`); retry after the `Retry-After` header's seconds.",
    500: "An unexpected error, logged on the server (`server_error`).",
    503: "The database is unavailable (`database_unavailable`); retry later.",
}

CSV_DESCRIPTION = (
    "CSV (RFC 4180), streamed: a header row, then every row the query selects (no pagination). Times in UTC, "
    "ISO 8601 with Z; the operation's description lists the columns."
)

_PROBLEM = ResolvedComponent("Problem", ResolvedComponent.SCHEMA, schema=PROBLEM_SCHEMA, object="Problem")
_PROBLEM_ERROR = ResolvedComponent(
    "ProblemError", ResolvedComponent.SCHEMA, schema=PROBLEM_ERROR_SCHEMA, object="ProblemError"
)


# A viewset action's summary, from its model's names.
ACTION_SUMMARIES = {
    "list": "List {plural}",
    "create": "Create {a} {name}",
    "retrieve": "Get {a} {name}",
    "update": "Replace {a} {name}",
    "partial_update": "Update fields of {a} {name}",
    "destroy": "Delete {a} {name}",
}

REST_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


def markdown_descriptions(result, generator, request, public):
    """Postprocessing hook: docstrings are written with reST literals (two backticks), which Markdown renders with
    the backticks showing; every description and summary gets Markdown's single backticks instead."""

    def convert(node):
        if isinstance(node, dict):
            return {
                key: REST_LITERAL.sub(r"`\1`", value)
                if key in ("description", "summary") and isinstance(value, str)
                else convert(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [convert(item) for item in node]
        return node

    return convert(result)


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema, plus summaries, the view's declared query parameters and the problem responses
    each operation can return."""

    def get_summary(self):
        action = getattr(self.view, "action", None)
        if isinstance(self.view, ViewSetMixin) and action in ACTION_SUMMARIES:
            meta = self.view.get_queryset().model._meta
            name = str(meta.verbose_name)
            article = "an" if name[:1] in "aeiou" else "a"
            return ACTION_SUMMARIES[action].format(a=article, name=name, plural=meta.verbose_name_plural)
        # Else extend_schema's summary (it overrides this method), or the first sentence of the view's docstring.
        doc = get_doc(self.view.__class__)
        return doc.split("\n\n")[0].replace("\n", " ").split(". ")[0].rstrip(".") or None

    def get_override_parameters(self):
        # A view's query serializer (iothub.api.query_parameters reads the same attribute).
        query_serializer_class = getattr(self.view, "query_serializer_class", None)
        return [query_serializer_class] if query_serializer_class else []

    def _get_pagination_parameters(self):
        # drf-spectacular documents the paginator of generic list views only; a plain APIView that paginates by
        # itself (raw telemetry's cursor) declares its pagination_class the same way.
        pagination_class = getattr(self.view, "pagination_class", None)
        if not isinstance(self.view, GenericAPIView) and pagination_class:
            return pagination_class().get_schema_operation_parameters(self.view)
        return super()._get_pagination_parameters()

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        registry.register_on_missing(_PROBLEM)
        registry.register_on_missing(_PROBLEM_ERROR)
        responses = operation["responses"]
        statuses = self.problem_statuses(operation) | {int(code) for code in responses if code[0] in "45"}
        for status in sorted(statuses):
            response = responses.setdefault(str(status), {})
            if not response.get("description"):
                response["description"] = PROBLEM_DESCRIPTIONS.get(status, "A problem.")
            response.setdefault("content", {PROBLEM_CONTENT_TYPE: {"schema": _PROBLEM.ref}})
        for status, response in responses.items():
            # A CSV export is text, not the JSON schema drf-spectacular gives every renderer.
            if status.startswith("2") and CSV_CONTENT_TYPE in response.get("content", {}):
                response["content"][CSV_CONTENT_TYPE] = {"schema": {"type": "string", "description": CSV_DESCRIPTION}}
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def problem_statuses(self, operation):
        """The error statuses this operation can answer, from what its view is made of."""
        view, parameters = self.view, operation.get("parameters", [])
        statuses = {500, 503}
        has_body = "requestBody" in operation
        if has_body:
            statuses |= {400, 413, 415}
        if any(parameter["in"] == "query" for parameter in parameters):
            statuses.add(400)
        if view.get_authenticate_header(view.request):
            statuses.add(401)
        if self._leaves_a_role_out():
            statuses.add(403)
        if any(parameter["in"] == "path" for parameter in parameters) or (
            self._is_list_view() and self._get_paginator()
        ):
            statuses.add(404)
        if self.method not in SAFE_METHODS and isinstance(view, ViewSetMixin):
            statuses.add(409)
        if view.get_throttles() or getattr(view, "login_protected", False):
            statuses.add(429)
        return statuses

    def _leaves_a_role_out(self):
        for permission in self.view.get_permissions():
            if isinstance(permission, RolePermission):
                roles = permission.read_roles if self.method in SAFE_METHODS else permission.write_roles
                if set(Role.values) - roles:
                    return True
        return False
