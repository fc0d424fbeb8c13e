"""Unknown query parameters are 400 problems: a typo (``?loaction=``) or a parameter an endpoint doesn't have
(``?page=2`` on a cursor-paginated list) must not silently return everything.

An endpoint's query parameters come from the declarations its view already makes, the ones drf-spectacular
documents in the OpenAPI schema: on a list, its filter backends (a django-filter filterset, ``search`` where it has
``search_fields``, ``ordering`` where it has ``ordering_fields``) and its pagination; ``format`` where it renders more
than one format; the fields of its ``query_serializer_class``; and ``extra_query_parameters`` for the few a view
reads itself. A filter or ordering field added to a view is accepted at once, nothing else to keep in step.
"""

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ErrorDetail
from rest_framework.generics import GenericAPIView
from rest_framework.settings import api_settings
from rest_framework.viewsets import ViewSetMixin

from iothub.api.exceptions import InvalidQueryParameters


def is_list_view(view):
    """Whether the request lists a collection: filters and pagination apply to lists only (as documented)."""
    if isinstance(view, ViewSetMixin):
        return view.action == "list"
    return isinstance(view, GenericAPIView) and view.request.method in ("GET", "HEAD")


def filterset_parameters(filterset_class):
    """The query parameters of a django-filter filterset: a range filter reads ``<name>_min``/``_max`` and the like."""
    for name, filter_ in filterset_class.base_filters.items():
        suffixes = getattr(filter_.field_class.widget, "suffixes", None)
        if suffixes:
            yield from (f"{name}_{suffix}" if suffix else name for suffix in suffixes)
        else:
            yield name


def filter_parameters(view):
    for backend_class in getattr(view, "filter_backends", ()):
        backend = backend_class()
        if isinstance(backend, DjangoFilterBackend):
            filterset_class = backend.get_filterset_class(view, view.get_queryset())
            if filterset_class is not None:
                yield from filterset_parameters(filterset_class)
        else:
            yield from (parameter["name"] for parameter in backend.get_schema_operation_parameters(view))


def view_paginator(view):
    """The paginator of a generic view (DRF's), or one made from ``pagination_class`` on a plain APIView that
    paginates by itself (raw telemetry)."""
    if isinstance(view, GenericAPIView):
        return view.paginator if is_list_view(view) else None
    pagination_class = getattr(view, "pagination_class", None)
    return pagination_class() if pagination_class else None


def renderer_formats(view):
    return list(dict.fromkeys(renderer.format for renderer in view.get_renderers()))


def allowed_query_parameters(view, *, exporting=False):
    """The names of the query parameters ``view`` takes for its current request. ``exporting``: the request
    streams a whole export, which no pagination parameter applies to."""
    names = set(getattr(view, "extra_query_parameters", ()))
    if len(renderer_formats(view)) > 1:
        names.add(api_settings.URL_FORMAT_OVERRIDE)
    query_serializer_class = getattr(view, "query_serializer_class", None)
    if query_serializer_class is not None:
        names.update(query_serializer_class().fields)
    if is_list_view(view):
        names.update(filter_parameters(view))
    paginator = view_paginator(view)
    if paginator is not None and not exporting:
        names.update(parameter["name"] for parameter in paginator.get_schema_operation_parameters(view))
    return names


def unknown_parameter_errors(unknown, allowed):
    takes = f"this endpoint takes {', '.join(sorted(allowed))}." if allowed else "this endpoint takes none."
    detail = f"Unknown query parameter: {takes}"
    return {name: [ErrorDetail(detail, code="unknown_parameter")] for name in sorted(unknown)}


class KnownQueryParametersMixin:
    """For every API view: a request naming a query parameter the view doesn't declare is a 400 problem naming it.
    Checked after authentication and permissions, so callers learn nothing before they may use the endpoint."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if not request.query_params:
            return
        format_error = getattr(request, "format_error", None)  # iothub.api.negotiation
        if format_error:
            raise InvalidQueryParameters(format_error)
        exporting = getattr(request.accepted_renderer, "streams_export", False)
        allowed = allowed_query_parameters(self, exporting=exporting)
        unknown = set(request.query_params) - allowed
        if unknown:
            raise InvalidQueryParameters(unknown_parameter_errors(unknown, allowed))
