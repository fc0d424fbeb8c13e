from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import filters

from iothub.api.exceptions import InvalidQueryParameters


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, with invalid filter values reported per query parameter."""

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            raise InvalidQueryParameters(filterset.errors)
        return filterset.qs


class SearchFilter(filters.SearchFilter):
    """DRF's, documented (and accepted) only on views that declare ``search_fields``: elsewhere it did nothing."""

    def get_schema_operation_parameters(self, view):
        return super().get_schema_operation_parameters(view) if getattr(view, "search_fields", None) else []


class OrderingFilter(filters.OrderingFilter):
    """DRF's ``?ordering=``, documented (and accepted) only on views that declare ``ordering_fields``, where a view
    may sort a field by an expression instead of its value (``ordering_expressions``, e.g. a severity by its rank),
    and ties keep the queryset's own order, so that pages of equal keys stay stable."""

    def get_schema_operation_parameters(self, view):
        if not getattr(view, "ordering_fields", None):
            return []
        return super().get_schema_operation_parameters(view)

    def filter_queryset(self, request, queryset, view):
        ordering = self.get_ordering(request, queryset, view)
        if not ordering:
            return queryset
        expressions = getattr(view, "ordering_expressions", {})
        terms = []
        for term in ordering:
            descending, name = term.startswith("-"), term.lstrip("-")
            if name in expressions:
                expression = expressions[name]
                terms.append(expression.desc() if descending else expression.asc())
            else:
                terms.append(term)
        requested = {term.lstrip("-") for term in ordering}
        default = queryset.query.order_by or queryset.model._meta.ordering
        tiebreak = [term for term in default if isinstance(term, str) and term.lstrip("-") not in requested]
        return queryset.order_by(*terms, *tiebreak)
